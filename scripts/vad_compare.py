"""The live stream's energy VAD against silero-vad's ONNX model (run with our ONNX Runtime, no torch), on
real recordings joined with pauses whose places we know: the real-voice set's letters, digits and strings
(`python -m smop_edge.recipe.real_voices build/real`) and pocketsphinx-testdata's LibriVox sentences,
clean (a faint pink-noise floor), in babble and in pink noise at several SNRs.

    pip install --no-deps silero-vad==6.2.3     # its wheel holds silero_vad.onnx (scripts/setup.sh does this)
    python scripts/vad_compare.py

Reference: each recording's speech extent (first to last 10 ms frame within 30 dB of its loudest) is one
utterance; the pauses between them (1-2 s) are silence. Both detectors' frame decisions are turned into
utterances as the stream does (a pause shorter than `min_silence` does not end one) and scored on a 10 ms
grid: frame accuracy, and boundary recall / precision (an utterance start or end within 0.25 s of a
reference one of the same kind, matched one to one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from smop_edge.recipe import noise
from smop_edge.runtime.features import SAMPLE_RATE
from smop_edge.runtime.media import read_audio
from smop_edge.runtime.segments import frame_energy_db
from smop_edge.runtime.stream import StreamOptions
from smop_edge.runtime.vad import FRAME, EnergyVad, SileroVad, silero_model

GRID = 160  # 10 ms
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
TOLERANCE = 0.25


def read_model(path: Path) -> bytes:
    """silero_vad.onnx from a silero-vad wheel, or the .onnx file itself."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return wheel.read("silero_vad/data/silero_vad.onnx")
    return path.read_bytes()


def speech_extent(audio: np.ndarray) -> tuple[int, int]:
    """First and last 10 ms frame (in samples) within 30 dB of the recording's loudest."""
    levels = frame_energy_db(audio, GRID)
    loud = np.flatnonzero(levels > levels.max() - 30)
    return int(loud[0]) * GRID, int(loud[-1] + 1) * GRID


def recordings(real: Path, per_voice: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Up to `per_voice` recordings of each real voice, and the LibriVox sentences, trimmed to their speech."""
    rng = np.random.default_rng(seed)
    rows = [json.loads(line) for line in (real / "manifest.jsonl").read_text().splitlines()]
    chosen = []
    for voice in sorted({r["voice"] for r in rows}):
        mine = [r for r in rows if r["voice"] == voice]
        chosen += [mine[i] for i in sorted(rng.choice(len(mine), min(per_voice, len(mine)), replace=False))]
    out = []
    for row in chosen:
        audio = read_audio(real / row["path"])
        start, end = speech_extent(audio)
        out.append((row["voice"], audio[start:end]))
    for path in sorted(LIBRIVOX.glob("*.wav")):
        audio = read_audio(path)
        start, end = speech_extent(audio)
        out.append(("librivox", audio[start:end]))
    return out


def join(clips: list[np.ndarray], seed: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The clips with 1-2 s pauses between (and around) them; the reference utterances in samples."""
    rng = np.random.default_rng(seed)
    parts, refs, pos = [], [], 0
    for clip in clips:
        pause = np.zeros(int(rng.uniform(1.0, 2.0) * SAMPLE_RATE), np.float32)
        parts += [pause, clip]
        refs.append((pos + len(pause), pos + len(pause) + len(clip)))
        pos += len(pause) + len(clip)
    parts.append(np.zeros(SAMPLE_RATE, np.float32))
    return np.concatenate(parts).astype(np.float32), refs


def with_noise(audio: np.ndarray, refs: list, condition: str, seed: int) -> np.ndarray:
    """A faint pink floor (-60 dB below the speech) and, for `kind:snr` (babble:10, pink:0), that noise at
    that SNR against the speech."""
    rng = np.random.default_rng(seed)
    speech = np.concatenate([audio[s:e] for s, e in refs]).astype(np.float64)
    power = float(np.mean(speech ** 2))
    floor = noise.pink(len(audio), rng)
    out = audio + floor * np.float32(np.sqrt(power * 1e-6 / np.mean(floor.astype(np.float64) ** 2)))
    if condition != "clean":
        kind, snr = condition.split(":")
        extra = noise.noise_like(kind, len(audio), rng)
        out = out + extra * np.float32(np.sqrt(power / (10 ** (float(snr) / 10) * np.mean(extra.astype(np.float64) ** 2))))
    peak = np.max(np.abs(out))
    return (out / peak * 0.9 if peak > 0.99 else out).astype(np.float32)


def detect(vad, audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Frame decisions on the 10 ms grid and the milliseconds each frame took."""
    n = len(audio) // FRAME
    marks = np.zeros(len(audio) // GRID, bool)
    began = time.perf_counter()
    for i in range(n):
        if vad(audio[i * FRAME:(i + 1) * FRAME]):
            marks[i * FRAME // GRID:(i + 1) * FRAME // GRID] = True
    return marks, (time.perf_counter() - began) * 1000 / max(n, 1)


def utterances(marks: np.ndarray, min_silence: float) -> list[tuple[int, int]]:
    """Runs of speech frames, joined across pauses shorter than `min_silence` (grid units)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], marks.astype(np.int8), [0]])))
    runs = list(zip(edges[::2], edges[1::2]))
    joined: list[list[int]] = []
    for s, e in runs:
        if joined and (s - joined[-1][1]) * GRID < min_silence * SAMPLE_RATE:
            joined[-1][1] = e
        else:
            joined.append([s, e])
    return [(s, e) for s, e in joined]


def matched(found: list[int], refs: list[int]) -> int:
    """Boundaries within TOLERANCE of a reference one, one to one (greedy, in time order)."""
    tol, used, hits = TOLERANCE * SAMPLE_RATE / GRID, set(), 0
    for f in found:
        best = min((r for r in range(len(refs)) if r not in used and abs(refs[r] - f) <= tol),
                   key=lambda r: abs(refs[r] - f), default=None)
        if best is not None:
            used.add(best)
            hits += 1
    return hits


def score(marks: np.ndarray, refs: list[tuple[int, int]], min_silence: float) -> dict[str, float]:
    truth = np.zeros(len(marks), bool)
    grid_refs = [(s // GRID, e // GRID) for s, e in refs]
    for s, e in grid_refs:
        truth[s:e] = True
    found = utterances(marks, min_silence)
    decided = np.zeros(len(marks), bool)
    for s, e in found:
        decided[s:e] = True
    hits = sum(matched([u[k] for u in found], [r[k] for r in grid_refs]) for k in (0, 1))
    return {"recall": hits / (2 * len(refs)), "precision": hits / max(2 * len(found), 1),
            "accuracy": float(np.mean(decided == truth)), "utterances": len(found)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--silero", type=Path, help="the silero-vad wheel or its silero_vad.onnx (default: the "
                                                    "installed wheel's, see runtime/vad.py)")
    parser.add_argument("--real", type=Path, default=Path("build/real"), help="the real-voice set's folder")
    parser.add_argument("--per-voice", type=int, default=12, help="recordings of each real voice")
    parser.add_argument("--conditions", default="clean,babble:20,babble:10,pink:10,pink:0",
                        help="clean, and noise:SNR (dB) for noise babble, pink or white")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = read_model(args.silero) if args.silero else silero_model().read_bytes()
    clips = recordings(args.real, args.per_voice, args.seed)
    clean, refs = join([c for _, c in clips], args.seed)
    min_silence = StreamOptions().min_silence
    print(f"{len(refs)} recordings ({len({v for v, _ in clips})} voices), {len(clean) / SAMPLE_RATE:.0f} s, "
          f"{sum(e - s for s, e in refs) / SAMPLE_RATE:.0f} s of it speech", file=sys.stderr)
    conditions = [c.strip() for c in args.conditions.split(",")]
    rows: dict[str, list[str]] = {}
    cost: dict[str, list[float]] = {"energy": [], "silero": []}
    for condition in conditions:
        audio = with_noise(clean, refs, condition, args.seed)
        for name, vad in (("energy", EnergyVad()), ("silero", SileroVad(model))):
            marks, ms = detect(vad, audio)
            cost[name].append(ms)
            result = score(marks, refs, min_silence)
            for metric in ("recall", "precision", "accuracy"):
                rows.setdefault(f"{name}: {'frame accuracy' if metric == 'accuracy' else 'boundary ' + metric}",
                                []).append(f"{result[metric]:.3f}")
            rows.setdefault(f"{name}: utterances ({len(refs)} spoken)", []).append(str(result["utterances"]))
    heads = [c.replace(":", " ") + ("" if c == "clean" else " dB") for c in conditions]
    print("| | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for label in sorted(rows, key=lambda k: (k.split(":")[1], k)):
        print(f"| {label} | " + " | ".join(rows[label]) + " |")
    for name, values in cost.items():
        print(f"\n{name}: {np.mean(values):.3f} ms (wall) per 40 ms frame", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
