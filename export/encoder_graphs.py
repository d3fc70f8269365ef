"""The audio and video encoder stages as torch modules with the graphs' signatures.

Dynamic graphs take any length. Static graphs (NPU variant) take one fixed-length bucket plus a mask
of the real frames, so a padded bucket gives exactly the unpadded result; all buckets of a stage
share one external weights file on disk.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
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


class VideoEncoderGraph(nn.Module):
    """frames [1, T, 88, 88] (normalised mouth crops; + padding_mask [1, T], True = padding, in static
    buckets) -> video_features [1, T, d]."""

    def __init__(self, model: LlamaSMoP) -> None:
        super().__init__()
        self.encoder = model.video_encoder

    def forward(self, frames: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(frames, padding_mask)


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
    if bucket:
        mask = torch.zeros(1, bucket, dtype=torch.bool)
        return export_module(graph, (torch.randn(1, bucket, 88, 88), mask), path, ["frames", "padding_mask"],
                             ["video_features"], external_data=True)
    return export_module(graph, (torch.randn(1, 9, 88, 88),), path, ["frames"], ["video_features"],
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
