"""The live engine's targets on a file source (issue 34), measured rather than tested:

- finals vs `smop-edge transcribe` on the same file: WER of each against the known text (target: the
  finals within 1 point);
- end of speech -> final latency at real-time pace with lips, p50 / p90 (targets: 300 / 600 ms), for
  each `--endpoints` pair asked (the pause that ends an utterance is part of the latency);
- a memory soak: the file looped at `--speed` for `--soak-minutes` of input (with the first endpoint
  pair), resident memory sampled, every sample accounted for (in = decoded + silent).

The file: `--clips` held-out clips of a synthetic corpus (`smop-edge synth ... --split test`, or the
demo model's three samples) joined into one talking-face video with 1-1.5 s pauses before each (the face
stays on screen) and a faint noise floor under the audio (-60 dBFS, as a microphone's).

    python scripts/live_bench.py --manifest build/recipe/corpus-test/manifest.jsonl --clips 30 \\
        --endpoints 0.6:0.15,0.3:0.15,0.25:0.1 --soak-minutes 10 --speed 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from smop_edge.runtime import DEMO_BUNDLE, load_recognizer, media
from smop_edge.runtime.features import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VIDEO_FPS
from smop_edge.runtime.live import FileSource, LiveEngine
from smop_edge.runtime.scoring import corpus_wer
from smop_edge.runtime.stream import StreamOptions


def joined_clips(manifest: Path, clips: int, out: Path, seed: int = 0) -> str:
    """Write the first `clips` clips of `manifest` as one video with pauses; return the spoken text."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()][:clips]
    rng = np.random.default_rng(seed)
    audio, plan = [], []
    for row in rows:
        path = manifest.parent / row["path"]
        info = media.probe(path)
        count = sum(1 for _ in media.iter_video(path, start=info.start))
        sound = media.read_audio(path, info.start)
        sound = np.pad(sound, (0, max(0, count * SAMPLES_PER_VIDEO_FRAME - len(sound))))
        pause = int(rng.uniform(1.0, 1.5) * VIDEO_FPS)  # before the clip: a microphone starts in silence
        audio += [np.zeros(pause * SAMPLES_PER_VIDEO_FRAME, np.float32), sound[:count * SAMPLES_PER_VIDEO_FRAME]]
        plan.append((path, info.start, pause))

    def frames():  # one clip in memory at a time; in a pause the last face stays, then the next one shows
        last = None
        for path, start, pause in plan:
            for i, frame in enumerate(media.iter_video(path, start=start)):
                if i == 0:
                    held = pause // 2 if last is not None else 0
                    yield from [last] * held + [frame] * (pause - held)
                yield frame
                last = frame

    audio.append(np.zeros(SAMPLE_RATE, np.float32))  # and ends in silence
    audio = np.concatenate(audio)
    audio += 1e-3 * rng.standard_normal(len(audio)).astype(np.float32)  # a microphone's floor, -60 dBFS
    media.write_video(out, frames(), audio=audio)
    return " ".join(row["text"] for row in rows)


def resident_mb() -> float:
    """This process's resident memory (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def live(rec, path: Path, speed: float, min_silence: float, padding: float, loops: int = 1, on_event=None):
    finals: list = []

    def collect(event) -> None:
        if event.type == "final":
            finals.append(event.text)
        if on_event:
            on_event(event)

    engine = LiveEngine(rec, [FileSource(path, speed=speed, loops=loops)],
                        stream_options=StreamOptions(min_silence=min_silence, padding=padding,
                                                     max_leading_silence=padding), on_event=collect)
    return engine.run(), finals


def accuracy_and_latency(rec, path: Path, reference: str, args: argparse.Namespace) -> None:
    """`transcribe` on the joined file and clip by clip, then the live engine at real-time pace."""
    began = time.perf_counter()
    whole = rec.transcribe(path)
    print(f"transcribe: WER {100 * corpus_wer([(reference, whole.text)])[0]:.1f} % "
          f"({whole.task}, {len(whole.segments)} segments, {time.perf_counter() - began:.1f} s)", flush=True)
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines()][:args.clips]
    each = [(row["text"], rec.transcribe(args.manifest.parent / row["path"]).text) for row in rows]
    print(f"transcribe, clip by clip: WER {100 * corpus_wer(each)[0]:.1f} %", flush=True)
    for pair in args.endpoints.split(","):
        min_silence, padding = (float(x) for x in pair.split(":"))
        summary, finals = live(rec, path, 1.0, min_silence, padding)
        wer = corpus_wer([(reference, " ".join(finals))])[0]
        print(f"live, real time, --min-silence {min_silence:g} --padding {padding:g}: WER {100 * wer:.1f} %, "
              f"{summary.finals} finals, "
              f"latency p50 {summary.latency(50):.0f} ms, p90 {summary.latency(90):.0f} ms, "
              f"max {max(summary.latencies_ms):.0f} ms; behind {summary.behind} times; "
              f"in = decoded + silent: {summary.samples_in == summary.samples_decoded + summary.samples_silent}; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)


def soak(rec, path: Path, seconds: float, args: argparse.Namespace) -> None:
    """The file looped for `--soak-minutes` of input at `--speed`, resident memory sampled every 5 s."""
    loops = max(int(round(args.soak_minutes * 60 / seconds)), 1)
    samples: list[tuple[float, float]] = []  # (seconds of input fed, resident MB)
    stop = threading.Event()
    fed = [0.0]

    def sample() -> None:
        while not stop.wait(5.0):
            samples.append((fed[0], resident_mb()))

    def progress(event) -> None:
        fed[0] = max(fed[0], event.end)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    min_silence, padding = (float(x) for x in args.endpoints.split(",")[0].split(":"))
    summary, _ = live(rec, path, args.speed, min_silence, padding, loops, progress)
    stop.set()
    expected = len(media.read_audio(path)) * loops
    after = [mb for t, mb in samples if t >= 120]  # after the first two minutes of input
    print(f"soak: {loops} loops, {summary.samples_in / SAMPLE_RATE / 60:.1f} min of input at {args.speed:g}x in "
          f"{summary.wall_seconds / 60:.1f} min; samples in {summary.samples_in} (file: {expected}), "
          f"decoded + silent {summary.samples_decoded + summary.samples_silent}; {summary.finals} finals; "
          f"behind {summary.behind} times", flush=True)
    if after:
        print(f"soak: resident memory after the first 2 min of input {min(after):.0f}-{max(after):.0f} MB "
              f"(range {max(after) - min(after):.0f} MB; {len(after)} samples); "
              f"first sample {samples[0][1]:.0f} MB", flush=True)
        minutes = range(1, int(summary.samples_in / SAMPLE_RATE // 60) + 1)
        trace = [next((f"{m}: {mb:.0f}" for t, mb in samples if t >= 60 * m), None) for m in minutes]
        print("soak: resident MB at minute of input " + ", ".join(t for t in trace if t), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=DEMO_BUNDLE.parent / "samples" / "manifest.jsonl")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--endpoints", default="0.6:0.15",
                        help="comma-separated MIN_SILENCE:PADDING pairs (s): the pause that ends an utterance, "
                             "the silence kept before and after its speech (smop-edge live's flags)")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="minutes of input for the memory soak")
    parser.add_argument("--speed", type=float, default=4.0, help="the soak's pace (times real time)")
    parser.add_argument("--soak-only", action="store_true", help="only the memory soak")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=["auto", "onnxruntime", "openvino"], default="auto")
    args = parser.parse_args(argv)
    rec = load_recognizer(backend=args.backend, threads=args.threads)
    work = Path(tempfile.mkdtemp(prefix="live-bench-"))
    path = work / "joined.mp4"
    reference = joined_clips(args.manifest, args.clips, path)
    seconds = len(media.read_audio(path)) / SAMPLE_RATE
    print(f"{path}: {args.clips} clips, {seconds:.1f} s, {len(reference.split())} words; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    if not args.soak_only:
        accuracy_and_latency(rec, path, reference, args)
    if args.soak_minutes > 0:
        soak(rec, path, seconds, args)
    return 0

if __name__ == "__main__":
    sys.exit(main())
