"""Token compression between an encoder and its projector: avg-pool or frame stacking."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smop_edge.runtime.config import CompressionConfig


def compress(x: torch.Tensor, cfg: CompressionConfig) -> torch.Tensor:
    """[B, T, D] -> [B, T // rate, D] (avg-pool) or [B, T // rate, D * rate] (stack).

    Both drop the ragged remainder of T % rate frames, as AvgPool1d and the authors' reshape do.
    """
    b, t, d = x.shape
    if t < cfg.rate:
        raise ValueError(f"{t} encoder frames are fewer than the compression rate {cfg.rate}")
    if cfg.rate == 1:
        return x
    if cfg.mode == "avg-pool":
        return F.avg_pool1d(x.transpose(1, 2), kernel_size=cfg.rate, stride=cfg.rate).transpose(1, 2)
    if cfg.mode == "stack":
        keep = (t // cfg.rate) * cfg.rate
        return x[:, :keep].reshape(b, t // cfg.rate, d * cfg.rate)
    raise ValueError(f"unknown compression mode {cfg.mode!r}")
