"""Energy-based speech detection, used to split long inputs into segments no longer than the
model's window at pauses. Short inputs stay whole, so they are transcribed exactly as the reference."""

from __future__ import annotations

import numpy as np

from .features import SAMPLE_RATE

FRAME = 320  # 20 ms analysis frames


def frame_energy_db(audio: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """The level (dB) of each whole `frame`-sample frame of `audio`."""
    n = len(audio) // frame
    if n == 0:
        return np.zeros(0)
    frames = np.asarray(audio[: n * frame], np.float64).reshape(n, frame)
    return 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def speech_threshold(levels_db: np.ndarray | list[float]) -> float | None:
    """The level above which a frame is speech, judged against `levels_db`: 3 dB above their quietest
    tenth and within 35 dB of the loudest (measured against flite phone labels: see docs/runtime.md);
    None for a flat signal (silence or steady noise). The live stream's energy VAD uses it too."""
    floor, peak = np.percentile(levels_db, 10), np.percentile(levels_db, 99)
    if peak - floor < 6.0 or peak < -60.0:
        return None
    return max(floor + 3.0, peak - 35.0)


def speech_mask(audio: np.ndarray) -> np.ndarray:
    """Per 20 ms frame: True where the energy stands above `speech_threshold` of the whole input."""
    db = frame_energy_db(audio)
    threshold = speech_threshold(db) if db.size else None
    return db > threshold if threshold is not None else np.zeros(db.size, bool)


def is_silent(audio: np.ndarray) -> bool:
    return not speech_mask(audio).any()


def split(audio: np.ndarray, max_seconds: float = 24.0, min_pause: float = 0.2) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering the input, each at most `max_seconds`, cut in the middle of
    the longest pause available (else at the quietest frame). Inputs up to `max_seconds` stay whole."""
    limit = int(max_seconds * SAMPLE_RATE)
    if len(audio) <= limit:
        return [(0, len(audio))]
    db = frame_energy_db(audio)
    speech = speech_mask(audio)
    cuts, start = [], 0
    min_frames = int(min_pause * SAMPLE_RATE / FRAME)
    while len(audio) - start > limit:
        lo, hi = start // FRAME + int(0.5 * limit / FRAME), (start + limit) // FRAME  # second half of the window
        window = ~speech[lo:hi]
        best, best_len, run = None, 0, 0
        for i, quiet in enumerate(window):  # longest pause in the window: cut in its middle
            run = run + 1 if quiet else 0
            if run > best_len:
                best, best_len = lo + i - run // 2, run
        if best is None or best_len < min_frames:
            best = lo + int(np.argmin(db[lo:hi]))
        cut = best * FRAME
        cuts.append((start, cut))
        start = cut
    cuts.append((start, len(audio)))
    return cuts
