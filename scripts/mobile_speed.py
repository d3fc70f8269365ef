"""Per-stage times of bundles on one input (a bench input's npz: audio + mouth frames), for docs/mobile.md:
    python scripts/mobile_speed.py INPUT.npz BUNDLE[:BACKEND] ... [--repeats 5]
Runs in an environment that has every backend named (build/envs/mobile has ONNX Runtime, LiteRT and ExecuTorch)."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from smop_edge.apps.commands.common import ensure_backend
from smop_edge.runtime import load_recognizer
from smop_edge.runtime.bundle import load_bundle
from smop_edge.runtime.manifest import FORMAT_BACKEND

STAGES = ("features", "audio_encoder", "video_encoder", "projector", "decoder")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("input")
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = np.load(args.input)
    audio, frames = data["audio"], data["frames"]
    print(f"{len(audio) / 16000:.1f} s AVSR, {args.threads} threads, median of {args.repeats} (ms)")
    print("| bundle | backend | total | " + " | ".join(STAGES) + " | tokens |")
    print("|---|---|---|" + "---|" * len(STAGES) + "---|")
    for spec in args.bundles:
        path, _, backend = spec.partition(":")
        backend = backend or FORMAT_BACKEND[load_bundle(path, verify=False).manifest.format]
        ensure_backend(backend, None)
        rec = load_recognizer(path, backend=backend, threads=args.threads)
        rec.transcribe(audio=audio, frames=frames, task="avsr")  # warm-up
        runs, totals = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = rec.transcribe(audio=audio, frames=frames, task="avsr")
            totals.append((time.perf_counter() - t0) * 1000)
            runs.append(out.timings)
        cells = [f"{statistics.median(r.get(s, 0.0) for r in runs):.0f}" for s in STAGES]
        print(f"| {path} | {backend} | {statistics.median(totals):.0f} | " + " | ".join(cells)
              + f" | {len(out.tokens)} |")


if __name__ == "__main__":
    main()
