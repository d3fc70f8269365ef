"""The audio and video encoder stages as torch modules with the graphs' signatures."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from smop_edge.models.llama_smop import LlamaSMoP
from smop_edge.runtime.features import N_FRAMES_30S

from .torch_export import export_module

MAX_VIDEO_FRAMES = 25 * 60 * 10  # a 10 min segment; the runtime splits long inputs far below this


class AudioEncoderGraph(nn.Module):
    """mel [1, n_mels, frames] -> audio_features [1, ceil(frames / 2), d] (all frames; the runtime
    keeps the first max(int(samples / 320), 25))."""

    def __init__(self, model: LlamaSMoP) -> None:
        super().__init__()
        self.encoder = model.audio_encoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_any_length(mel)


class VideoEncoderGraph(nn.Module):
    """frames [1, T, 88, 88] (normalised mouth crops) -> video_features [1, T, d]."""

    def __init__(self, model: LlamaSMoP) -> None:
        super().__init__()
        self.encoder = model.video_encoder

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)


def export_audio_encoder(model: LlamaSMoP, path: Path, faithful: bool, static_frames: int | None = None) -> Path:
    """Faithful mode takes exactly 3000 mel frames (30 s); fast mode any length up to that, or a
    fixed `static_frames` bucket."""
    mels = model.cfg.audio_encoder.mel_bins
    frames = N_FRAMES_30S if faithful else (static_frames or 400)
    dynamic = None if (faithful or static_frames) else {"mel": {2: ("mel_frames", 2, N_FRAMES_30S)}}
    return export_module(AudioEncoderGraph(model), (torch.randn(1, mels, frames),), path, ["mel"],
                         ["audio_features"], dynamic)


def export_video_encoder(model: LlamaSMoP, path: Path, static_frames: int | None = None) -> Path:
    frames = static_frames or 9
    dynamic = None if static_frames else {"frames": {1: ("video_frames", 1, MAX_VIDEO_FRAMES)}}
    return export_module(VideoEncoderGraph(model), (torch.randn(1, frames, 88, 88),), path, ["frames"],
                         ["video_features"], dynamic)
