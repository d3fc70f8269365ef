"""AV-HuBERT used video-only, re-implemented without fairseq; attribute names follow fairseq's keys.

Details no key reveals (docs/design.md §1): the stem's max-pool pads (0, 1, 1); the zero audio features come
*first* in the 2048-d concat; the conv positional encoding drops its last frame (SamePad), then GELU;
pre- vs post-LN comes from the config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smop_edge.runtime.config import VideoEncoderConfig


class BasicBlock(nn.Module):
    """ResNet BasicBlock with PReLU activations (one slope per channel)."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.PReLU(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + residual)


class ResNetTrunk(nn.Module):
    """ResNet-18 trunk ([2, 2, 2, 2] BasicBlocks) with global average pooling."""

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        inplanes = in_channels
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                        BasicBlock(planes, planes, 1)))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class ResNetEncoder(nn.Module):
    """3-D conv stem + 2-D ResNet trunk applied per frame: [B, 1, T, H, W] -> [B, T, C]."""

    def __init__(self, cfg: VideoEncoderConfig) -> None:
        super().__init__()
        c = cfg.stem_channels
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, c, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(c),
            nn.PReLU(c),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = ResNetTrunk(c, cfg.trunk_widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.frontend3D(x)  # [B, C, T, H', W']
        t = x.shape[2]
        x = x.transpose(1, 2).reshape(b * t, x.shape[1], x.shape[3], x.shape[4])
        return self.trunk(x).view(b, t, -1)


class SubModel(nn.Module):
    """A modality front end (`resnet`, absent for audio) followed by a linear `proj`."""

    def __init__(self, resnet: nn.Module | None, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.resnet = resnet
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.resnet(x) if self.resnet is not None else x)


class WeightNormConv1d(nn.Module):
    """Conv1d with fairseq's weight norm over dim 2 (keys `weight_g`, `weight_v`, `bias`)."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.weight_v, std=(4.0 / (kernel * channels)) ** 0.5)
        with torch.no_grad():
            self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


class SamePad(nn.Module):
    """Drop the extra last frame an even-kernel conv with padding k // 2 produces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :-1]


class SelfAttention(nn.Module):
    """fairseq MultiheadAttention (self only), with the authors' optional LoRA on Q and V."""

    def __init__(self, d: int, heads: int, lora_bottleneck: int = 0, lora_scale: float = 2.0) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.lora_scale = lora_scale
        if lora_bottleneck:
            self.lora_down_Q = nn.Linear(d, lora_bottleneck, bias=False)
            self.lora_up_Q = nn.Linear(lora_bottleneck, d, bias=False)
            self.lora_down_V = nn.Linear(d, lora_bottleneck, bias=False)
            self.lora_up_V = nn.Linear(lora_bottleneck, d, bias=False)

    @property
    def has_lora(self) -> bool:
        return hasattr(self, "lora_down_Q")

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.has_lora:
            q = q + self.lora_up_Q(self.lora_down_Q(x)) * self.lora_scale
            v = v + self.lora_up_V(self.lora_down_V(x)) * self.lora_scale
        q, k, v = (y.view(b, t, self.heads, d // self.heads).transpose(1, 2) for y in (q, k, v))
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """fairseq TransformerSentenceEncoderLayer (GELU FFN), pre- or post-LN."""

    def __init__(self, cfg: VideoEncoderConfig) -> None:
        super().__init__()
        self.layer_norm_first = cfg.layer_norm_first
        self.self_attn = SelfAttention(cfg.d_model, cfg.heads, cfg.lora_bottleneck, cfg.lora_scale)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), padding_mask)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x, padding_mask))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class TransformerEncoder(nn.Module):
    """Conv positional encoding + transformer layers + the final LayerNorm."""

    def __init__(self, cfg: VideoEncoderConfig) -> None:
        super().__init__()
        self.layer_norm_first = cfg.layer_norm_first
        self.pos_conv = nn.Sequential(WeightNormConv1d(cfg.d_model, cfg.pos_conv_kernel, cfg.pos_conv_groups),
                                      SamePad(), nn.GELU())
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x, padding_mask)
        return self.layer_norm(x) if self.layer_norm_first else x


class VideoEncoder(nn.Module):
    """AV-HuBERT, video only: normalised 88x88 mouth frames [B, T, 88, 88] -> [B, T, d] (25 Hz)."""

    def __init__(self, cfg: VideoEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_extractor_video = SubModel(ResNetEncoder(cfg), cfg.trunk_widths[-1], cfg.d_model)
        # Present in every checkpoint but unused video-only: the audio features are zeros.
        self.feature_extractor_audio = SubModel(None, cfg.audio_feature_dim, cfg.d_model)
        self.layer_norm = nn.LayerNorm(2 * cfg.d_model)
        self.post_extract_proj = nn.Linear(2 * cfg.d_model, cfg.d_model)
        self.encoder = TransformerEncoder(cfg)

    def fused_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Front end + [zero audio, video] concat + LayerNorm + projection: [B, T, d]."""
        video = self.feature_extractor_video(frames.unsqueeze(1))
        fused = torch.cat([torch.zeros_like(video), video], dim=-1)
        return self.post_extract_proj(self.layer_norm(fused))

    def forward(self, frames: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if frames.ndim != 4:
            raise ValueError(f"expected mouth frames [B, T, H, W], got shape {tuple(frames.shape)}")
        return self.encoder(self.fused_features(frames), padding_mask)
