"""The decoder stage: Llama with `inputs_embeds` and explicit past K/V in, last-position logits and
present K/V out (DESIGN §3). LoRA is merged first; the attention, rope and cache plumbing are
written here in plain torch ops so that the exported graph has exactly this signature.

Graph I/O: `inputs_embeds` [B, L, H], `past_keys` / `past_values` [layers, B, kv_heads, P, head_dim]
-> `logits` [B, V] (last position), `present_keys` / `present_values` [layers, B, kv_heads, P + L, head_dim].
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from smop_edge.models.llm import merge_lora


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class ExportableDecoder(nn.Module):
    """transformers' Llama weights behind the decoder graph signature (a merged-LoRA copy)."""

    def __init__(self, llm) -> None:
        super().__init__()
        llm = copy.deepcopy(llm)
        merge_lora(llm)
        cfg = llm.config
        self.layers, self.norm, self.lm_head = llm.model.layers, llm.model.norm, llm.lm_head
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        rotary = llm.model.rotary_emb
        self.register_buffer("inv_freq", rotary.inv_freq.detach().clone().float(), persistent=False)
        self.rope_scale = float(rotary.attention_scaling)

    def forward(self, inputs_embeds: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor):
        b, length, _ = inputs_embeds.shape
        past = past_keys.shape[3]
        positions = torch.arange(length, device=inputs_embeds.device, dtype=torch.float32) + past
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos() * self.rope_scale, emb.sin() * self.rope_scale  # [L, head_dim]
        total = torch.arange(past + length, device=inputs_embeds.device)
        mask = total[None, :] <= (torch.arange(length, device=inputs_embeds.device) + past)[:, None]
        rep = self.heads // self.kv_heads
        x = inputs_embeds
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(b, length, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k = torch.cat([past_keys[i], k], dim=2)
            v = torch.cat([past_values[i], v], dim=2)
            keys.append(k)
            values.append(v)
            k_all = k[:, :, None].expand(b, self.kv_heads, rep, past + length, self.head_dim).reshape(
                b, self.heads, past + length, self.head_dim)
            v_all = v[:, :, None].expand(b, self.kv_heads, rep, past + length, self.head_dim).reshape(
                b, self.heads, past + length, self.head_dim)
            out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(b, length, self.heads * self.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        logits = self.lm_head(self.norm(x[:, -1]))
        return logits, torch.stack(keys), torch.stack(values)

    def empty_past(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(len(self.layers), batch, self.kv_heads, 0, self.head_dim, dtype=dtype)


MAX_BEAMS = 64
MAX_CONTEXT = 8192


def export_decoder(model, path):
    """Export the decoder stage of `model` (a LlamaSMoP) to ONNX with dynamic batch (beams),
    input length and past length (0 for the prefill)."""
    from .torch_export import export_module

    dec = ExportableDecoder(model.llm)
    cfg = model.cfg.llm
    past = torch.zeros(cfg.layers, 2, cfg.kv_heads, 3, cfg.head_dim)
    example = (torch.randn(2, 5, cfg.hidden), past, past.clone())
    batch, past_len = ("batch", 1, MAX_BEAMS), ("past_length", 0, MAX_CONTEXT)
    dynamic = {"inputs_embeds": {0: batch, 1: ("length", 1, MAX_CONTEXT)},
               "past_keys": {1: batch, 3: past_len}, "past_values": {1: batch, 3: past_len}}
    return export_module(dec, example, path, ["inputs_embeds", "past_keys", "past_values"],
                         ["logits", "present_keys", "present_values"], dynamic)
