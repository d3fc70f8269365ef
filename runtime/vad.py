"""Voice-activity detectors for the live stream: each judges one 40 ms frame (640 samples at 16 kHz)
at a time, causally, and says whether it is speech.

- `energy` (the default): the frame's level against the levels of the last 30 s.
- `silero`: silero-vad's ONNX model run by our ONNX Runtime (no torch). The model file is read from
  the `silero-vad` wheel, installed without its dependencies (`pip install --no-deps silero-vad==6.2.3`:
  the package itself needs torch; only `silero_vad/data/silero_vad.onnx` is read). Measured against the
  energy detector on real recordings in noise: docs/runtime.md ("Choosing the VAD").
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .errors import UsageError
from .features import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VIDEO_FPS
from .segments import frame_energy_db, speech_threshold

FRAME = SAMPLES_PER_VIDEO_FRAME  # 40 ms
HISTORY_FRAMES = 30 * VIDEO_FPS  # the energy detector's levels are judged against the last 30 s
DETECTORS = ("energy", "silero")


class EnergyVad:
    """Speech when a frame's level is above `segments.speech_threshold` of the recent levels: the offline
    splitter's rule, causal."""

    def __init__(self) -> None:
        self._levels: list[float] = []

    def __call__(self, frame: np.ndarray) -> bool:
        level = float(frame_energy_db(frame, len(frame))[0])
        self._levels.append(level)
        del self._levels[:-HISTORY_FRAMES]
        threshold = speech_threshold(self._levels)
        return threshold is not None and level > threshold


def silero_model() -> Path:
    """silero_vad.onnx inside the installed silero-vad wheel (found without importing its package)."""
    spec = importlib.util.find_spec("silero_vad")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "silero_vad.onnx"
        if path.is_file():
            return path
    raise UsageError("the silero VAD reads silero-vad's ONNX model: pip install --no-deps silero-vad==6.2.3 "
                     "(only its model file is used; its package, which needs torch, is never imported)")


class SileroVad:
    """silero-vad on 32 ms windows (with 64 samples of context, as its own wrapper feeds it); a 40 ms frame
    is speech when a window ending in it is. Hysteresis as silero's: speech from probability `threshold`
    on, until it falls below `threshold` - 0.15."""

    WINDOW, CONTEXT = 512, 64

    def __init__(self, model: str | Path | bytes | None = None, threshold: float = 0.5) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        model = model if isinstance(model, bytes) else str(model or silero_model())
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.threshold = threshold
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros((1, self.CONTEXT), np.float32)
        self._pending = np.zeros(0, np.float32)
        self._speech = False

    def __call__(self, frame: np.ndarray) -> bool:
        self._pending = np.concatenate([self._pending, np.asarray(frame, np.float32)])
        speech = False
        while len(self._pending) >= self.WINDOW:
            x = np.concatenate([self._context, self._pending[None, :self.WINDOW]], axis=1)
            self._pending = self._pending[self.WINDOW:]
            prob, self._state = self.session.run(None, {"input": x, "state": self._state,
                                                        "sr": np.array(SAMPLE_RATE, np.int64)})
            self._context = x[:, -self.CONTEXT:]
            p = float(np.reshape(prob, -1)[0])
            self._speech = p >= self.threshold or (self._speech and p >= self.threshold - 0.15)
            speech = speech or self._speech
        return speech


def make_vad(name: str):
    """The detector called `name` (one of DETECTORS), fresh."""
    if name == "energy":
        return EnergyVad()
    if name == "silero":
        return SileroVad()
    raise UsageError(f"unknown VAD {name!r} (choose from {', '.join(DETECTORS)})")
