"""Peak memory of `smop-edge transcribe` on long videos: a talking-face video of N minutes (the demo
samples, face and voice, cycled back to back at 360 x 360, 25 fps) transcribed with the default bundle by
a fresh process, whose peak resident memory (VmHWM) and wall time are printed as JSON lines.

    .venv/bin/python scripts/memory_check.py --minutes 10 60 --out build/long

The videos are made once and kept in --out (a 60 min video is about 0.4 GB).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from smop_edge.runtime import DEMO_BUNDLE, media
from smop_edge.runtime.features import SAMPLE_RATE, VIDEO_FPS, align_audio_to_video

SIZE = 360
CHILD = """
import json, sys
from smop_edge.apps.cli import main
code = main(["transcribe", sys.argv[1], "--json", "--quiet"])
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"exit": code, "peak_rss_mb": round(peak / 1024, 1)}), file=sys.stderr)
"""


def _samples() -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Each demo sample's frames (resized to SIZE x SIZE) and its audio, cut to whole video frames."""
    import cv2

    clips = []
    for path in sorted((DEMO_BUNDLE.parent / "samples").glob("*.mp4")):
        frames = [cv2.resize(f, (SIZE, SIZE)) for f in media.iter_video(path)]
        clips.append((frames, align_audio_to_video(media.read_audio(path), len(frames))))
    return clips


def make_video(path: Path, minutes: float) -> Path:
    """A video of `minutes` made by cycling the demo samples (written as it is made: memory stays flat)."""
    if path.exists():
        return path
    clips = _samples()
    n_frames = int(minutes * 60 * VIDEO_FPS)
    frames: Iterator[np.ndarray] = itertools.islice(
        itertools.chain.from_iterable(itertools.cycle([f for f, _ in clips])), n_frames)
    audio = np.zeros(n_frames * SAMPLE_RATE // VIDEO_FPS, np.float32)
    at = 0
    for _, clip in itertools.cycle(clips):  # each clip's audio is cut to its frames: the two stay in step
        if at >= len(audio):
            break
        audio[at: at + len(clip)] = clip[: len(audio) - at]
        at += len(clip)
    tmp = path.with_suffix(".tmp.mp4")
    media.write_video(tmp, frames, VIDEO_FPS, audio)
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--out", default="build/long")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for minutes in args.minutes:
        video = make_video(out / f"talk-{minutes:g}min.mp4", minutes)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(video)], capture_output=True, text=True)
        report = json.loads(proc.stderr.strip().splitlines()[-1])
        result = json.loads(proc.stdout) if report["exit"] == 0 else {}
        print(json.dumps({"minutes": minutes, **report, "wall_s": round(time.perf_counter() - started, 1),
                          "segments": len(result.get("segments", [])), "task": result.get("task"),
                          "fallback_segments": sum(1 for s in result.get("segments", []) if s.get("task")),
                          "words": len(result.get("text", "").split())}), flush=True)


if __name__ == "__main__":
    main()
