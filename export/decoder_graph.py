"""The decoder stage: Llama with `inputs_embeds` and explicit past K/V in, last-position logits and
present K/V out (docs/design.md §3). LoRA is merged first; the attention, rope and cache plumbing are
written here in plain torch ops so that the exported graph has exactly this signature.

Dynamic graph: `inputs_embeds` [B, L, H], `past_keys` / `past_values` [layers, B, kv_heads, P, head_dim]
-> `logits` [B, V] (last position), `present_keys` / `present_values` [layers, B, kv_heads, P + L, head_dim].

Static graph (NPUs): a fixed chunk of S positions and a fixed-capacity cache of C positions:
`inputs_embeds` [1, S, H], `past_keys` / `past_values` [layers, 1, kv_heads, C, head_dim],
`position` [1] (where the chunk starts), `logit_index` [1] (which chunk row's logits to return)
-> `logits` [1, V], `present_keys` / `present_values` [layers, 1, kv_heads, C, head_dim]. The chunk is
written into the cache with a one-hot matmul, so no shape depends on data.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from smop_edge.models.llm import merged_weight

MAX_BEAMS = 64
MAX_CONTEXT = 8192


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class ExportableDecoder(nn.Module):
    """transformers' Llama weights behind the dynamic decoder graph signature. LoRA is merged into
    copies of the Q and V weights only (the model itself is untouched: it stays the reference), so no
    second copy of a multi-GB LLM is made."""

    def __init__(self, llm) -> None:
        super().__init__()
        cfg = llm.config
        self.layers, self.norm = llm.model.layers, llm.model.norm
        self.q_weights = [merged_weight(layer.self_attn.q_proj) for layer in self.layers]
        self.v_weights = [merged_weight(layer.self_attn.v_proj) for layer in self.layers]
        # [H, V] as stored, so that the output projection is a plain MatMul on an initializer (a
        # Transpose in front of a 1 GB weight is not folded, and weight compression would skip it)
        self.lm_head_t = llm.lm_head.weight.detach().float().t().contiguous()
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        rotary = llm.model.rotary_emb
        self.register_buffer("inv_freq", rotary.inv_freq.detach().clone().float(), persistent=False)
        self.rope_scale = float(rotary.attention_scaling)

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos() * self.rope_scale, emb.sin() * self.rope_scale

    def _layers(self, x, cos, sin, mask, past_keys, past_values, update):
        """All decoder layers; `update(past, new)` returns the cache a layer attends over."""
        b, length, _ = x.shape
        rep, scale = self.heads // self.kv_heads, self.head_dim ** -0.5
        bias = torch.where(mask, 0.0, float("-inf")).to(x.dtype)  # [rows, keys]: what a row may not see adds -inf
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = F.linear(h, self.q_weights[i]).view(b, length, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(h, self.v_weights[i]).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = update(past_keys[i], k * cos + _rotate_half(k) * sin)
            v = update(past_values[i], v)
            keys.append(k)
            values.append(v)
            # grouped-query attention: the `rep` query heads of each KV head meet its keys and values through a
            # broadcasting matmul, never a copy of them per query head (that Broadcast was 5.4 of 102 ms per
            # paper-scale decode step in OpenVINO); written out because the ONNX exporter's attention is 4-D
            grouped = q.view(b, self.kv_heads, rep, length, self.head_dim)
            scores = torch.matmul(grouped, k[:, :, None].transpose(-1, -2)) * scale + bias
            out = torch.matmul(torch.softmax(scores, dim=-1), v[:, :, None]).view(b, self.heads, length, self.head_dim)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(b, length, self.heads * self.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return x, torch.stack(keys), torch.stack(values)

    def forward(self, inputs_embeds: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor):
        length, past = inputs_embeds.shape[1], past_keys.shape[3]
        positions = torch.arange(length, device=inputs_embeds.device) + past
        cos, sin = self._rope(positions)
        mask = torch.arange(past + length, device=inputs_embeds.device)[None, :] <= positions[:, None]
        x, keys, values = self._layers(inputs_embeds, cos, sin, mask, past_keys, past_values,
                                       lambda old, new: torch.cat([old, new], dim=2))
        return torch.matmul(self.norm(x[:, -1]), self.lm_head_t), keys, values

    def empty_past(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(len(self.layers), batch, self.kv_heads, 0, self.head_dim, dtype=dtype)


class StaticExportableDecoder(ExportableDecoder):
    """The same decoder behind the static signature (fixed chunk, fixed-capacity cache, position input)."""

    def forward(self, inputs_embeds: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor,
                position: torch.Tensor, logit_index: torch.Tensor):
        chunk, capacity = inputs_embeds.shape[1], past_keys.shape[3]
        positions = torch.arange(chunk, device=inputs_embeds.device) + position
        cos, sin = self._rope(positions)
        slots = torch.arange(capacity, device=inputs_embeds.device)
        mask = slots[None, :] <= positions[:, None]  # [S, C]: causal, and nothing past the chunk
        write = (slots[None, :] == positions[:, None]).to(inputs_embeds.dtype)  # [S, C] one-hot rows
        keep = 1.0 - write.sum(dim=0)  # [C]

        def update(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            return old * keep[:, None] + torch.matmul(write.transpose(0, 1), new)

        x, keys, values = self._layers(inputs_embeds, cos, sin, mask, past_keys, past_values, update)
        last = torch.index_select(x, 1, logit_index)[:, 0]
        return torch.matmul(self.norm(last), self.lm_head_t), keys, values


def export_decoder(model, path: Path, static: dict | None = None) -> Path:
    """Export the decoder stage of `model` (a LlamaSMoP): dynamic batch (beams), input length and past
    length (0 for the prefill); or, with `static` = {"chunk": S, "capacity": C}, the static graph."""
    from .torch_export import export_module

    cfg = model.cfg.llm
    if static:
        dec = StaticExportableDecoder(model.llm)
        past = torch.zeros(cfg.layers, 1, cfg.kv_heads, static["capacity"], cfg.head_dim)
        example = (torch.randn(1, static["chunk"], cfg.hidden), past, past.clone(), torch.tensor([3]),
                   torch.tensor([static["chunk"] - 1]))
        return export_module(dec, example, path, ["inputs_embeds", "past_keys", "past_values", "position",
                                                  "logit_index"], ["logits", "present_keys", "present_values"])
    dec = ExportableDecoder(model.llm)
    past = torch.zeros(cfg.layers, 2, cfg.kv_heads, 3, cfg.head_dim)
    example = (torch.randn(2, 5, cfg.hidden), past, past.clone())
    batch, past_len = ("batch", 1, MAX_BEAMS), ("past_length", 0, MAX_CONTEXT)
    dynamic = {"inputs_embeds": {0: batch, 1: ("length", 1, MAX_CONTEXT)},
               "past_keys": {1: batch, 3: past_len}, "past_values": {1: batch, 3: past_len}}
    return export_module(dec, example, path, ["inputs_embeds", "past_keys", "past_values"],
                         ["logits", "present_keys", "present_values"], dynamic)
