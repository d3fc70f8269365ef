"""Weight-only quantization of linear layers: int8 per output channel, int4 grouped (symmetric).

Weights are returned as real 8-/4-bit integers plus float32 scales; graphs dequantize them with
standard DequantizeLinear nodes, so the files hold the integers, not fake-quantized floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_MODES = ("fp32", "int8", "int4")
EXPERT_MODES = LLM_MODES = WEIGHT_MODES
ENCODER_MODES = ("fp32", "int8")
INT4_GROUP_SIZES = (32, 16, 8)


@dataclass
class QuantizedWeight:
    """A [in, out] weight (MatMul layout) as integers with scales; `group` is None for per-channel."""

    values: np.ndarray  # int8 holding int8 or int4 values, [in, out]
    scale: np.ndarray  # [out] (per channel) or [in / group, out] (grouped)
    bits: int
    group: int | None

    def dequantize(self) -> np.ndarray:
        scale = self.scale if self.group is None else np.repeat(self.scale, self.group, axis=0)
        return self.values.astype(np.float32) * scale


def int4_group_size(in_features: int, preferred: int = 32) -> int:
    """The largest of 32/16/8 (at most `preferred`) that divides `in_features`."""
    for g in INT4_GROUP_SIZES:
        if g <= preferred and in_features % g == 0:
            return g
    raise ValueError(f"no int4 group size among {INT4_GROUP_SIZES} divides {in_features} input channels")


def quantize_weight(weight: np.ndarray, bits: int, group_size: int = 32) -> QuantizedWeight:
    """Symmetric quantization of a [in, out] weight: int8 per output channel, int4 per group of
    `group_size` input channels and output channel. A zero channel gets scale 1 (values 0)."""
    w = np.asarray(weight, dtype=np.float32)
    if bits == 8:
        qmax = 127
        amax = np.abs(w).max(axis=0)
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
        return QuantizedWeight(q, scale, 8, None)
    if bits == 4:
        g = int4_group_size(w.shape[0], group_size)
        qmax = 7
        blocks = w.reshape(w.shape[0] // g, g, w.shape[1])
        amax = np.abs(blocks).max(axis=1)
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        q = np.clip(np.rint(blocks / scale[:, None, :]), -qmax, qmax).astype(np.int8).reshape(w.shape)
        return QuantizedWeight(q, scale, 4, g)
    raise ValueError(f"unsupported bit width {bits}")
