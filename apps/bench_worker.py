"""One benchmark configuration, run in its own process so that its peak memory is its own:
`python -m smop_edge.apps.bench_worker SPEC.json RESULT.json`.

Engines: `media` (decode and lip-crop the input files, saving what the models get), `onnxruntime` /
`openvino` (a bundle through the torch-free runtime), `torch` (the faithful reference) and
`faster-whisper` (the peer, Whisper tiny.en on the audio alone). Model engines time every stage of the
same recognition call, the peer its whole call; only the torch engine imports torch.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from smop_edge.runtime.decoding import DecodingOptions, decode
from smop_edge.runtime.recognizer import elapsed_ms

from .peer import ENGINE as PEER_ENGINE


class TimedStepper:
    """Wraps a `decoding.Stepper`, recording the prefill's and every decode step's milliseconds."""

    def __init__(self, inner) -> None:
        self.inner, self.prefill_ms, self.step_ms = inner, 0.0, []

    def prefill(self) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.prefill()
        self.prefill_ms = elapsed_ms(t0)
        return out

    def step(self, tokens: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.step(tokens)
        self.step_ms.append(elapsed_ms(t0))
        return out

    def select(self, rows: np.ndarray) -> None:
        self.inner.select(rows)


def recognise_timed(rec, audio: np.ndarray | None, frames: np.ndarray | None, task: str,
                    options: DecodingOptions, fixed_steps: bool) -> tuple[list[int], dict[str, Any]]:
    """One utterance through `rec` (runtime `Recognizer` or torch `ReferenceRecognizer`): tokens and
    {stage: ms} with `prefill`, `decode_token` (a list: one per step) and `total` (arrays in, tokens
    out). `fixed_steps` ignores EOS so that exactly `options.max_new_tokens` tokens are decoded."""
    timings: dict[str, Any] = {}
    t_start = time.perf_counter()
    a, v, _ = rec.encode(audio, frames, task, timings)
    t0 = time.perf_counter()
    prefix = rec.assemble_prefix(task, a, v)
    timings["prefix"] = elapsed_ms(t0)
    stepper = TimedStepper(rec.stepper(prefix))
    tokens = decode(stepper, set() if fixed_steps else {rec.ids.eos}, options)
    timings["total"] = elapsed_ms(t_start)
    timings["prefill"] = stepper.prefill_ms
    timings["decode_token"] = stepper.step_ms
    return tokens, timings


def _open_recognizer(spec: dict[str, Any]):
    if spec["engine"] == "torch":
        import torch

        from smop_edge.models.reference import ReferenceRecognizer

        torch.set_num_threads(spec["threads"])
        rec = ReferenceRecognizer.from_checkpoint(spec["checkpoint"], spec["tokenizer"],
                                                  audio_mode=spec["audio_mode"])
        return rec, torch.inference_mode
    from smop_edge.runtime.recognizer import Recognizer

    rec = Recognizer.from_bundle(spec["bundle"], backend=spec["engine"], threads=spec["threads"],
                                 exact=spec.get("exact", True), precision=spec.get("precision", "f32"))
    return rec, contextlib.nullcontext


def run_model(spec: dict[str, Any]) -> dict[str, Any]:
    """Load, then per input: one warm-up and `repeats` timed runs (transcript-only inputs: one run)."""
    t0 = time.perf_counter()
    rec, mode = _open_recognizer(spec)
    load_ms = elapsed_ms(t0)
    options = DecodingOptions(beams=spec.get("beams", 1), max_new_tokens=spec["max_new_tokens"])
    fixed = bool(spec.get("fixed_steps"))
    results = {}
    with mode():
        for item in spec["inputs"]:
            data = np.load(item["npz"])
            audio = data["audio"] if "audio" in data else None
            frames = data["frames"] if "frames" in data else None
            runs = 1 + (spec["repeats"] if item.get("timed", True) else 0)
            timings = []
            for _ in range(runs):
                tokens, t = recognise_timed(rec, audio, frames, item["task"], options, fixed)
                timings.append(t)
            results[item["name"]] = {"tokens": tokens, "text": rec.tokenizer.decode(tokens),
                                     "timings": timings[1:]}
    return {"load_ms": load_ms, "inputs": results}


def run_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """The peer on each input's audio: load, then a warm-up and `repeats` timed calls (its whole call is
    its `total`: features, encoder and decoding; no stage split)."""
    from .peer import WhisperPeer

    t0 = time.perf_counter()
    peer = WhisperPeer(threads=spec["threads"])
    load_ms = elapsed_ms(t0)
    results = {}
    for item in spec["inputs"]:
        audio = np.load(item["npz"])["audio"]
        timings = []
        for _ in range(1 + (spec["repeats"] if item.get("timed", True) else 0)):
            t0 = time.perf_counter()
            text = peer.transcribe(audio).text
            timings.append({"total": elapsed_ms(t0), "decode_token": []})
        results[item["name"]] = {"tokens": [], "text": text, "timings": timings[1:]}
    return {"load_ms": load_ms, "inputs": results}


def run_media(spec: dict[str, Any]) -> dict[str, Any]:
    """Per media file: audio decoding, video decoding and lip cropping (which decodes the video itself),
    timed separately; the audio and mouth frames are saved once for the model engines."""
    from smop_edge.runtime import media
    from smop_edge.runtime.transcribe import mouth_frames

    results = {}
    for item in spec["inputs"]:
        path, timings = Path(item["media"]), []
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            info = media.probe(path)
            audio = media.read_audio(path, info.start)
            audio_ms = elapsed_ms(t0)
            t0 = time.perf_counter()
            n = sum(1 for _ in media.iter_video(path, start=info.start))
            video_ms = elapsed_ms(t0)
            t0 = time.perf_counter()
            frames, found = mouth_frames(path, False, audio, info.start)  # decodes the video itself
            timings.append({"audio_decode": audio_ms, "video_decode": video_ms, "lip_crop": elapsed_ms(t0)})
        if frames is None:
            raise SystemExit(f"{path}: no face found; the benchmark needs a clip with a visible speaker")
        out = Path(item["npz"])
        if not out.exists():
            np.savez(out, audio=audio, frames=frames)
        results[item["name"]] = {"timings": timings, "video_frames": n, "frames_with_face": found}
    return {"inputs": results}


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM: unlike getrusage's ru_maxrss, it
    does not inherit the high-water mark of the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    run = {"media": run_media, PEER_ENGINE: run_peer}.get(spec["engine"], run_model)
    result = run(spec)
    result["peak_rss_mb"] = peak_rss_mb()
    result["torch_imported"] = "torch" in sys.modules
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:3])
