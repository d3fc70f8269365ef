"""Time per utterance of the default recognizer on clips of many lengths (what a live stream feeds it):
the first `--clips` clips of a manifest, decoded and lip-cropped once, then transcribed `--rounds` times
after a warm-up; prints the mean and the process's resident memory.

    .venv/bin/python scripts/utterance_speed.py build/recipe/corpus-test/manifest.jsonl --clips 24 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from smop_edge.runtime import load_recognizer, media
from smop_edge.runtime.transcribe import mouth_frames


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", type=Path)
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default="auto")
    p.add_argument("--task", default="avsr")
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines()][:args.clips]
    inputs = []
    for row in rows:
        path = args.manifest.parent / row["path"]
        audio = media.read_audio(path)
        frames, _ = mouth_frames(path, False, audio, 0.0)
        inputs.append((audio, frames if args.task != "asr" else None))
    rec = load_recognizer(backend=args.backend)
    for audio, frames in inputs[:4]:  # warm-up
        rec.transcribe(audio=audio, frames=frames, task=args.task)
    began = time.perf_counter()
    for _ in range(args.rounds):
        for audio, frames in inputs:
            rec.transcribe(audio=audio, frames=frames, task=args.task)
    ms = (time.perf_counter() - began) / (args.rounds * len(inputs)) * 1000
    rss = next(int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    print(f"{rec.backend}: {ms:.1f} ms per utterance ({len(inputs)} clips x {args.rounds}, {args.task}); "
          f"resident {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
