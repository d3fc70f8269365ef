"""Token compression in numpy, equal to `models.compression` (avg-pool or frame stacking)."""

from __future__ import annotations

import numpy as np


def compress(x: np.ndarray, mode: str, rate: int) -> np.ndarray:
    """[T, D] -> [T // rate, D] (avg-pool) or [T // rate, D * rate] (stack); the remainder is dropped."""
    t, d = x.shape
    if t < rate:
        raise ValueError(f"{t} encoder frames are fewer than the compression rate {rate}")
    keep = (t // rate) * rate
    groups = x[:keep].reshape(t // rate, rate, d)
    if mode == "avg-pool":
        return groups.mean(axis=1, dtype=np.float32)
    if mode == "stack":
        return groups.reshape(t // rate, rate * d)
    raise ValueError(f"unknown compression mode {mode!r}")
