"""Whisper audio encoder: Hugging Face's `WhisperEncoder` (so checkpoint keys load as they are) plus
a fast forward that accepts any number of mel frames up to 30 s."""

from __future__ import annotations

import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from smop_edge.runtime.features import N_FRAMES_30S

from .config import AudioEncoderConfig


class AudioEncoder(WhisperEncoder):
    """`WhisperEncoder` with `encode(mel, faithful)`: faithful = Whisper's own 30 s forward."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__(WhisperConfig(
            d_model=cfg.d_model, encoder_layers=cfg.layers, encoder_attention_heads=cfg.heads,
            encoder_ffn_dim=cfg.ffn_dim, num_mel_bins=cfg.mel_bins, max_source_positions=cfg.max_positions,
            decoder_layers=1, decoder_attention_heads=cfg.heads, decoder_ffn_dim=cfg.ffn_dim,
        ))

    def encode(self, mel: torch.Tensor, faithful: bool = True) -> torch.Tensor:
        """mel [B, n_mels, frames] -> hidden states [B, ceil(frames / 2), d].

        Faithful mode requires the 3000-frame (30 s padded) input and runs transformers' forward.
        Fast mode runs the same weights on any length, slicing the positional embeddings.
        """
        if faithful:
            if mel.shape[-1] != N_FRAMES_30S:
                raise ValueError(f"faithful mode needs {N_FRAMES_30S} mel frames, got {mel.shape[-1]}")
            return self(mel).last_hidden_state
        return self.forward_any_length(mel)

    def forward_any_length(self, mel: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.conv1(mel))
        x = nn.functional.gelu(self.conv2(x)).permute(0, 2, 1)
        if x.shape[1] > self.embed_positions.weight.shape[0]:
            raise ValueError(f"audio too long for the encoder: {x.shape[1]} frames > "
                             f"{self.embed_positions.weight.shape[0]} positions (30 s)")
        x = x + self.embed_positions.weight[: x.shape[1]]
        for layer in self.layers:
            out = layer(x, attention_mask=None, layer_head_mask=None)
            x = out[0] if isinstance(out, tuple) else out
        return self.layer_norm(x)
