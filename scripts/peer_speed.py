"""End-to-end speed beside the peer: a 10 s audio clip transcribed by a fresh process, from process start
to text, with our default bundle (`smop-edge transcribe --task asr`) and with Whisper tiny.en through
faster-whisper (int8, greedy), alternating, several rounds, in one run on the same machine.

The clip is utterances of a manifest (drawn at random, seeded) joined and cut to 10 s:

    .venv/bin/python scripts/peer_speed.py build/recipe/corpus-sealed/manifest.jsonl --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from smop_edge.recipe.corpus import read_manifest
from smop_edge.runtime import media
from smop_edge.runtime.features import SAMPLE_RATE

WHISPER = """
import sys
from faster_whisper import WhisperModel
from smop_edge.models.pretrained.ct2_whisper import whisper_model_dir
model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8")
segments, _ = model.transcribe(sys.argv[1], language="en", beam_size=1)
print(" ".join(s.text.strip() for s in segments))
"""


def ten_second_clip(manifest: str, out: Path, seconds: float = 10.0, seed: int = 0) -> Path:
    """Utterances of `manifest` in a seeded random order, joined and cut to `seconds`, as a 16 kHz wav."""
    rows = read_manifest(manifest)
    order = np.random.default_rng(seed).permutation(len(rows))
    parts, total = [], 0
    for i in order:
        audio = media.read_audio(rows[i]["file"])
        parts.append(audio)
        total += len(audio)
        if total >= seconds * SAMPLE_RATE:
            break
    audio = np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]
    out.parent.mkdir(parents=True, exist_ok=True)
    media.write_audio(out, audio)
    return out


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", help="utterances to build the clip from (e.g. the sealed split)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bundle", help="our bundle (default: the embedded demo bundle)")
    p.add_argument("--backend", default="auto", help="our engine (smop-edge transcribe --backend)")
    p.add_argument("--clip", default="build/peer-speed/clip-10s.wav")
    args = p.parse_args(argv)
    clip = ten_second_clip(args.manifest, Path(args.clip))
    ours = [str(Path(sys.executable).with_name("smop-edge")), "transcribe", str(clip), "--task", "asr", "--quiet",
            "--backend", args.backend]
    ours += ["--bundle", args.bundle] if args.bundle else []
    peer = [sys.executable, "-c", WHISPER, str(clip)]
    times: dict[str, list[float]] = {"ours": [], "whisper": []}
    texts = {}
    for _ in range(args.rounds):
        for name, cmd in (("ours", ours), ("whisper", peer)):
            seconds, texts[name] = timed(cmd)
            times[name].append(seconds)
    for name in times:
        print(f"{name:8s} median {statistics.median(times[name]):.2f} s  (runs {', '.join(f'{t:.2f}' for t in times[name])})"
              f"  text: {texts[name]}")
    ratio = statistics.median(times["ours"]) / statistics.median(times["whisper"])
    print(f"ours / whisper: {ratio:.2f}x the peer's time (10 s clip, process start to text)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
