"""A manifest of real human recordings of letters and digits that exist offline, in Debian packages
(scripts/setup.sh installs them): KLettres' English letter names (two speakers, en and en_GB) and
the pocketsphinx test recordings "five five" (cards) and "two nine three four zero" (TIDIGITS).

    python -m smop_edge.models.real_voices build/real   # writes build/real/manifest.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from smop_edge.runtime.errors import UsageError

KLETTRES = Path("/usr/share/klettres")
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")


def write_manifest(out: str | Path) -> Path:
    """Write `out`/manifest.jsonl (audio-only rows: path, text, voice) and return its path."""
    from smop_edge.runtime.media import write_audio

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for accent in ("en", "en_GB"):
        folder = KLETTRES / accent / "alpha"
        if not folder.is_dir():
            raise UsageError(f"{folder} is missing: install klettres-data (scripts/setup.sh does)")
        for f in sorted(folder.glob("*.ogg")):
            rows.append({"id": f"klettres-{accent}-{f.stem.lower()}", "path": str(f), "text": f.stem.lower(),
                         "voice": f"klettres:{accent}"})
    cards = POCKETSPHINX / "cards" / "004.wav"
    tidigits = POCKETSPHINX / "tidigits" / "dhd.2934z.raw"
    if not (cards.is_file() and tidigits.is_file()):
        raise UsageError(f"{POCKETSPHINX} is incomplete: install pocketsphinx-testdata (scripts/setup.sh does)")
    rows.append({"id": "pocketsphinx-cards-004", "path": str(cards), "text": "five five", "voice": "pocketsphinx:cards"})
    # headerless 16-bit little-endian 16 kHz (pocketsphinx's default rate, which its own test decodes it at)
    wav = write_audio(out / "tidigits-dhd-2934z.wav", np.fromfile(tidigits, "<i2").astype(np.float32) / 32768)
    rows.append({"id": "tidigits-dhd-2934z", "path": wav.name, "text": "two nine three four zero",
                 "voice": "tidigits:dhd"})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


if __name__ == "__main__":
    print(write_manifest(sys.argv[1] if len(sys.argv) > 1 else "build/real"))
