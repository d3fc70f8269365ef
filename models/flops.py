"""How much arithmetic the encoders do for an input (multiply-adds counted as 2 FLOPs), from their
configuration: the benchmark compares measured encoder times with FLOPs / peak throughput.

Only matrix products and convolutions are counted (norms, activations and softmax are a few percent
at most).
"""

from __future__ import annotations

from smop_edge.runtime.lips import CROP_SIZE

from smop_edge.runtime.config import AudioEncoderConfig, VideoEncoderConfig


def _transformer(tokens: int, d: int, ffn: int, layers: int) -> float:
    """Q/K/V/out projections, the feed-forward pair, and the two attention products, per layer."""
    return layers * (2 * tokens * (4 * d * d + 2 * d * ffn) + 4 * tokens * tokens * d)


def audio_encoder(cfg: AudioEncoderConfig, mel_frames: int) -> float:
    """Whisper: conv1 (k 3), conv2 (k 3, stride 2), then the transformer on mel_frames / 2 tokens."""
    tokens = (mel_frames + 1) // 2
    stem = 2 * mel_frames * cfg.mel_bins * cfg.d_model * 3 + 2 * tokens * cfg.d_model * cfg.d_model * 3
    return stem + _transformer(tokens, cfg.d_model, cfg.ffn_dim, cfg.layers)


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def video_front_end(cfg: VideoEncoderConfig) -> float:
    """One frame through the 3-D stem (5x7x7 over one channel) and the ResNet trunk of BasicBlocks."""
    side = _conv_out(CROP_SIZE, 7, 2, 3)
    flops = 2 * side * side * cfg.stem_channels * 5 * 7 * 7
    side = _conv_out(side, 3, 2, 1)  # max pool
    inplanes = cfg.stem_channels
    for i, planes in enumerate(cfg.trunk_widths):
        stride = 1 if i == 0 else 2
        out = _conv_out(side, 3, stride, 1)
        flops += 2 * out * out * planes * inplanes * 9  # block 1, conv1
        flops += 3 * 2 * out * out * planes * planes * 9  # block 1 conv2, block 2 conv1 and conv2
        if stride != 1 or inplanes != planes:
            flops += 2 * out * out * planes * inplanes  # 1x1 downsample
        side, inplanes = out, planes
    return flops


def video_encoder(cfg: VideoEncoderConfig, frames: int) -> float:
    """AV-HuBERT video-only: front end per frame, projection, the 2d -> d fusion projection, the
    grouped positional convolution, then the transformer on one token per frame."""
    d = cfg.d_model
    per_frame = video_front_end(cfg) + 2 * cfg.trunk_widths[-1] * d + 2 * 2 * d * d
    pos_conv = 2 * frames * d * (d // cfg.pos_conv_groups) * cfg.pos_conv_kernel
    return frames * per_frame + pos_conv + _transformer(frames, d, cfg.ffn_dim, cfg.layers)
