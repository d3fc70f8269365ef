"""Whisper audio encoder: Hugging Face's `WhisperEncoder` (so checkpoint keys load as they are) plus
a fast forward that accepts any number of mel frames up to 30 s."""

from __future__ import annotations

import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from smop_edge.runtime.features import N_FRAMES_30S

from smop_edge.runtime.config import AudioEncoderConfig


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

    def forward_any_length(self, mel: torch.Tensor, mel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Whisper's encoder on any number of mel frames. With `mel_mask` [B, frames] (True = real),
        padded frames are invisible: the output's real frames equal those of the unpadded input (so a
        fixed-length bucket reproduces fast mode exactly)."""
        x = nn.functional.gelu(self.conv1(mel))
        if mel_mask is not None:  # the unpadded conv2 would see zero padding here
            x = x * mel_mask[:, None, :].to(x.dtype)
        x = nn.functional.gelu(self.conv2(x)).permute(0, 2, 1)
        if x.shape[1] > self.embed_positions.weight.shape[0]:
            raise ValueError(f"audio too long for the encoder: {x.shape[1]} frames > "
                             f"{self.embed_positions.weight.shape[0]} positions (30 s)")
        x = x + self.embed_positions.weight[: x.shape[1]]
        attn = None
        if mel_mask is not None:
            valid = mel_mask[:, ::2]  # encoder frame j is real when mel frame 2j is
            attn = torch.zeros(valid.shape, dtype=x.dtype).masked_fill(~valid, torch.finfo(x.dtype).min)
            attn = attn[:, None, None, :].expand(-1, 1, x.shape[1], -1)
        for layer in self.layers:
            out = layer(x, attention_mask=attn, layer_head_mask=None)
            x = out[0] if isinstance(out, tuple) else out
        return self.layer_norm(x)
