"""A manifest of real human recordings of letters and digits that exist offline, in Debian packages
(scripts/setup.sh installs them), one voice label per source (and a speaker label where one speaker has
two sources, so that `eval` can weigh each speaker the same):

- KLettres' English letter names (two speakers, `en` and `en_GB`);
- qABCs' English letter names (one speaker);
- Asterisk's prompts by Allison Smith: letters, digits and "oh" (G.722, 16 kHz), alone and joined into
  strings of 2-6 items with pauses (her words, our sequencing: `asterisk:allison-strings`);
- saytime's digits and "oh" (one speaker, 8 kHz mu-law: telephone band);
- the pocketsphinx test recordings "five five" (cards) and "two nine three four zero" (TIDIGITS).

    python -m smop_edge.recipe.real_voices build/real   # writes build/real/manifest.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from smop_edge.runtime.errors import UsageError
from smop_edge.runtime.features import SAMPLE_RATE
from smop_edge.runtime.media import read_audio, write_audio

from .corpus import DIGITS, LETTERS

KLETTRES = Path("/usr/share/klettres")
QABCS = Path("/usr/share/qabcs/abcs/en/sounds/alpha")
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
SAYTIME = Path("/usr/share/saytime")
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
N_STRINGS = 40  # Allison strings of 2-6 items
ALLISON_SPEAKER = "allison-smith"  # her words and her strings: two voices, one speaker


def _need(package: str, *paths: Path) -> None:
    """A clear error when a file of Debian package `package` is not there."""
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} is missing: install {package} (scripts/setup.sh does)")


def _digit_files(folder: Path, ext: str) -> dict[str, Path]:
    """{"zero": folder/0.ext, ..., "nine": folder/9.ext, "oh": folder/oh.ext}"""
    return {**{word: folder / f"{i}.{ext}" for i, word in enumerate(DIGITS)}, "oh": folder / f"oh.{ext}"}


def _allison_strings(clips: dict[str, np.ndarray], out: Path, rng: np.random.Generator) -> list[dict]:
    """Strings of 2-6 of Allison's words with 0.1-0.5 s pauses and 0.2 s of silence around them."""
    rows, edge = [], np.zeros(SAMPLE_RATE // 5, np.float32)
    for i in range(N_STRINGS):
        words = list(rng.choice(list(clips), size=int(rng.integers(2, 7))))
        pieces = [edge]
        for k, word in enumerate(words):
            pieces.append(clips[word])
            pause = rng.uniform(0.1, 0.5) if k < len(words) - 1 else 0.0
            pieces.append(np.zeros(int(pause * SAMPLE_RATE), np.float32))
        name = f"allison-string-{i:02d}"
        rows.append({"id": name, "path": _write(out / f"{name}.wav", np.concatenate([*pieces, edge])),
                     "text": " ".join(words), "voice": "asterisk:allison-strings", "speaker": ALLISON_SPEAKER})
    return rows


def _write(path: Path, audio: np.ndarray) -> str:
    return write_audio(path, audio).name


def write_manifest(out: str | Path, seed: int = 0) -> Path:
    """Write `out`/manifest.jsonl (audio-only rows: path, text, voice; headerless sources converted to
    wav files beside it) and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for accent in ("en", "en_GB"):
        folder = KLETTRES / accent / "alpha"
        _need("klettres-data", folder)
        for f in sorted(folder.glob("*.ogg")):
            rows.append({"id": f"klettres-{accent}-{f.stem.lower()}", "path": str(f), "text": f.stem.lower(),
                         "voice": f"klettres:{accent}"})
    _need("qabcs-data", *(QABCS / f"{c}.ogg" for c in LETTERS))
    rows += [{"id": f"qabcs-{c}", "path": str(QABCS / f"{c}.ogg"), "text": c, "voice": "qabcs:en"} for c in LETTERS]

    allison_files = {**{c: ALLISON / "letters" / f"{c}.g722" for c in LETTERS}, **_digit_files(ALLISON / "digits", "g722")}
    _need("asterisk-core-sounds-en-g722", *allison_files.values())
    allison = {word: read_audio(f, fmt="g722") for word, f in allison_files.items()}
    for word, audio in allison.items():
        rows.append({"id": f"allison-{word}", "path": _write(out / f"allison-{word}.wav", audio), "text": word,
                     "voice": "asterisk:allison", "speaker": ALLISON_SPEAKER})
    rows += _allison_strings(allison, out, np.random.default_rng(seed))

    saytime = _digit_files(SAYTIME, "au")  # headerless 8 kHz mu-law despite the .au name
    _need("saytime", *saytime.values())
    for word, f in saytime.items():
        audio = read_audio(f, fmt="mulaw", options={"sample_rate": "8000"})
        rows.append({"id": f"saytime-{word}", "path": _write(out / f"saytime-{word}.wav", audio), "text": word,
                     "voice": "saytime"})

    cards = POCKETSPHINX / "cards" / "004.wav"
    tidigits = POCKETSPHINX / "tidigits" / "dhd.2934z.raw"
    _need("pocketsphinx-testdata", cards, tidigits)
    rows.append({"id": "pocketsphinx-cards-004", "path": str(cards), "text": "five five", "voice": "pocketsphinx:cards"})
    # headerless 16-bit little-endian 16 kHz (pocketsphinx's default rate, which its own test decodes it at)
    audio = np.fromfile(tidigits, "<i2").astype(np.float32) / 32768
    rows.append({"id": "tidigits-dhd-2934z", "path": _write(out / "tidigits-dhd-2934z.wav", audio),
                 "text": "two nine three four zero", "voice": "tidigits:dhd"})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


if __name__ == "__main__":
    print(write_manifest(sys.argv[1] if len(sys.argv) > 1 else "build/real"))
