"""Energy-based speech detection, used to split long inputs into segments no longer than the
model's window at pauses. Short inputs stay whole, so they are transcribed exactly as the reference."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .features import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME

FRAME = 320  # 20 ms analysis frames


def frame_power(audio: np.ndarray, frame: int) -> np.ndarray:
    """The mean square of each whole `frame`-sample frame of `audio` (float64)."""
    n = len(audio) // frame
    return (np.asarray(audio[: n * frame], np.float64).reshape(n, frame) ** 2).mean(1)


def frame_energy_db(audio: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """The level (dB) of each whole `frame`-sample frame of `audio`."""
    return 10.0 * np.log10(frame_power(audio, frame) + 1e-12)


@dataclass
class Levels:
    """What the splitter and the speaker chooser need of a file's audio, in a few bytes a second: the level
    of every `frame`-sample frame (dB), the RMS of every 25 fps video frame, and the number of samples."""

    db: np.ndarray
    video_rms: np.ndarray
    samples: int


def levels(chunks: Iterable[np.ndarray], frame: int = FRAME, block: int = 1 << 20) -> Levels:
    """`Levels` of audio that arrives in chunks (e.g. `media.iter_audio`), computed `block` samples at a time
    so that an hour of audio needs no more memory than a few seconds of it."""
    sums = {frame: [], SAMPLES_PER_VIDEO_FRAME: []}
    carry = np.zeros(0, np.float32)
    total = 0

    def add(samples: np.ndarray) -> None:
        for size, out in sums.items():
            out.append(frame_power(samples, size))

    lcm = np.lcm(frame, SAMPLES_PER_VIDEO_FRAME)
    for chunk in chunks:
        total += len(chunk)
        carry = np.concatenate([carry, np.asarray(chunk, np.float32)])
        if len(carry) >= block:
            cut = len(carry) // lcm * lcm  # whole frames of both sizes
            add(carry[:cut])
            carry = carry[cut:]
    add(carry)
    power = {size: np.concatenate(parts) if parts else np.zeros(0) for size, parts in sums.items()}
    return Levels(10.0 * np.log10(power[frame] + 1e-12), np.sqrt(power[SAMPLES_PER_VIDEO_FRAME]), total)


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
    return mask_of(frame_energy_db(audio))


def mask_of(db: np.ndarray) -> np.ndarray:
    """`speech_mask` from the frames' levels."""
    threshold = speech_threshold(db) if db.size else None
    return db > threshold if threshold is not None else np.zeros(db.size, bool)


def is_silent(audio: np.ndarray) -> bool:
    return not speech_mask(audio).any()


def utterances(db: np.ndarray, samples: int, min_pause: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering the input, cut in the middle of every pause of at least
    `min_pause` seconds between speech (from the 20 ms levels `db`): one utterance each, as the live
    stream ends one. Without speech, the whole input."""
    speech = np.flatnonzero(mask_of(db))
    if speech.size == 0:
        return [(0, samples)]
    gaps = np.flatnonzero(np.diff(speech) > max(1, round(min_pause * SAMPLE_RATE / FRAME)))
    cuts = [min(samples, (speech[i] + speech[i + 1] + 1) // 2 * FRAME) for i in gaps]
    edges = [0, *cuts, samples]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def split(audio: np.ndarray, max_seconds: float = 24.0, min_pause: float = 0.2) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering the input, each at most `max_seconds`, cut in the middle of
    the longest pause available (else at the quietest frame). Inputs up to `max_seconds` stay whole."""
    return split_levels(frame_energy_db(audio), len(audio), max_seconds, min_pause)


def split_levels(db: np.ndarray, samples: int, max_seconds: float = 24.0, min_pause: float = 0.2
                 ) -> list[tuple[int, int]]:
    """`split` from the 20 ms levels `db` of `samples` samples (a long file's audio need not be held)."""
    limit = int(max_seconds * SAMPLE_RATE)
    if samples <= limit:
        return [(0, samples)]
    speech = mask_of(db)
    cuts, start = [], 0
    min_frames = int(min_pause * SAMPLE_RATE / FRAME)
    while samples - start > limit:
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
    cuts.append((start, samples))
    return cuts
