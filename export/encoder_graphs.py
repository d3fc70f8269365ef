"""The audio and video encoder stages as torch modules with the graphs' signatures.

Dynamic graphs take any length. Static graphs (NPU variant) take one fixed-length bucket plus a mask
of the real frames, so a padded bucket gives exactly the unpadded result; all buckets of a stage
share one external weights file on disk.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from smop_edge.models.llama_smop import LlamaSMoP
from smop_edge.runtime.features import N_FRAMES_30S

from .torch_export import export_module

MAX_VIDEO_FRAMES = 25 * 60 * 10  # a 10 min segment; the runtime splits long inputs far below this


class AudioEncoderGraph(nn.Module):
    """mel [1, n_mels, frames] (+ mel_mask [1, frames] in static buckets) -> audio_features
    [1, ceil(frames / 2), d]: all frames; the runtime keeps the first max(int(samples / 320), 25)."""

    def __init__(self, model: LlamaSMoP) -> None:
        super().__init__()
        self.encoder = model.audio_encoder

    def forward(self, mel: torch.Tensor, mel_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder.forward_any_length(mel, mel_mask)


class StemAs2d(nn.Module):
    """The 3-D stem (Conv3d 1->C over 5 frames, BN, PReLU, MaxPool (1,3,3)) computed per frame in 2-D:
    the 5 temporal taps become 5 input channels of a Conv2d with the same weights (one Gather builds
    them). ONNX Runtime runs Conv2d with its blocked (NCHWc) kernels, Conv3d with a slow generic one
    (73 % of the demo video encoder's time). Where every PReLU slope is >= 0, PReLU is monotonic and
    commutes with the max pool, so it runs after the pool on a quarter of the values. Same results;
    input [B, 1, T, H, W], output [B, C, T, H', W'] as the 3-D stem's."""

    def __init__(self, stem: nn.Sequential) -> None:
        super().__init__()
        conv, self.bn, self.prelu, pool = stem
        assert conv.in_channels == 1 and conv.stride[0] == 1 and 2 * conv.padding[0] == conv.kernel_size[0] - 1
        self.taps, self.conv, self.pool = conv.kernel_size[0], conv, pool
        self.prelu_after_pool = bool((self.prelu.weight >= 0).all())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        padded = F.pad(x[:, 0], (0, 0, 0, 0, self.taps // 2, self.taps // 2))  # [B, T + taps - 1, H, W]
        index = (torch.arange(t)[:, None] + torch.arange(self.taps)[None]).reshape(-1)  # frame t's taps
        taps = padded.index_select(1, index).reshape(b * t, self.taps, h, w)
        y = F.conv2d(taps, self.conv.weight[:, 0], None, self.conv.stride[1:], self.conv.padding[1:])
        bn = self.bn
        y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        if not self.prelu_after_pool:
            y = self.prelu(y)
        y = F.max_pool2d(y, self.pool.kernel_size[1:], self.pool.stride[1:], self.pool.padding[1:])
        if self.prelu_after_pool:
            y = self.prelu(y)
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class VideoEncoderGraph(nn.Module):
    """frames [1, T, 88, 88] (normalised mouth crops; + padding_mask [1, T], True = padding, in static
    buckets) -> video_features [1, T, d]. The 3-D stem is exported in its 2-D form (`StemAs2d`)."""

    def __init__(self, model: LlamaSMoP) -> None:
        super().__init__()
        self.encoder = model.video_encoder

    def forward(self, frames: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(frames, padding_mask)


@contextlib.contextmanager
def stem_as_2d(model: LlamaSMoP):
    """Swap the video encoder's 3-D stem for `StemAs2d` while a graph is traced, then put it back."""
    resnet = model.video_encoder.feature_extractor_video.resnet
    stem = resnet.frontend3D
    resnet.frontend3D = StemAs2d(stem)
    try:
        yield
    finally:
        resnet.frontend3D = stem


def export_audio_encoder(model: LlamaSMoP, path: Path, faithful: bool, bucket: int | None = None) -> Path:
    """Faithful mode takes exactly 3000 mel frames (30 s, no mask: that is the reference); fast mode
    any length up to that, or a fixed `bucket` of mel frames with a mask."""
    mels = model.cfg.audio_encoder.mel_bins
    graph = AudioEncoderGraph(model)
    if faithful:
        return export_module(graph, (torch.randn(1, mels, N_FRAMES_30S),), path, ["mel"], ["audio_features"])
    if bucket:
        mask = torch.ones(1, bucket, dtype=torch.bool)
        return export_module(graph, (torch.randn(1, mels, bucket), mask), path, ["mel", "mel_mask"],
                             ["audio_features"], external_data=True)
    return export_module(graph, (torch.randn(1, mels, 400),), path, ["mel"], ["audio_features"],
                         {"mel": {2: ("mel_frames", 2, N_FRAMES_30S)}})


def export_video_encoder(model: LlamaSMoP, path: Path, bucket: int | None = None) -> Path:
    graph = VideoEncoderGraph(model)
    with stem_as_2d(model):
        if bucket:
            mask = torch.zeros(1, bucket, dtype=torch.bool)
            return export_module(graph, (torch.randn(1, bucket, 88, 88), mask), path, ["frames", "padding_mask"],
                                 ["video_features"], external_data=True)
        # ExecuTorch plans memory at a bound torch.export derives from the example: 15 frames from a 9-frame one
        frames = 50 if path.suffix == ".pte" else 9
        return export_module(graph, (torch.randn(1, frames, 88, 88),), path, ["frames"], ["video_features"],
                             {"frames": {1: ("video_frames", 1, MAX_VIDEO_FRAMES)}})


def share_weights(first: Path, other: Path) -> None:
    """Point `other`'s external weights at `first`'s weights file where the tensor (name, shape, type)
    is the same, keep bucket-specific constants inline, and delete `other`'s own weights file: static
    buckets then cost their graph only."""
    ref = onnx.load(str(first), load_external_data=False)
    shared = {t.name: t for t in ref.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    own_files = {e.value for t in onnx.load(str(other), load_external_data=False).graph.initializer
                 for e in t.external_data if e.key == "location"}
    model = onnx.load(str(other))  # with its weights
    for t in model.graph.initializer:
        src = shared.get(t.name)
        if src is not None and list(src.dims) == list(t.dims) and src.data_type == t.data_type:
            t.ClearField("raw_data")
            del t.external_data[:]
            t.external_data.extend(src.external_data)
            t.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(other))
    keep = {e.value for t in shared.values() for e in t.external_data if e.key == "location"}
    for name in own_files - keep:
        (other.parent / name).unlink(missing_ok=True)
