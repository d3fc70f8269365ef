"""The Llama decoder: transformers' `LlamaForCausalLM` plus the authors' divisor LoRA on Q and V.

LoRA (authors' code): q += up_Q(down_Q(x)) * s, v += up_V(down_V(x)) * s, bias-free, bottleneck
hidden / rank and s = alpha / rank. The LoRA weights hang off the attention module so that the
checkpoint keys `self_attn.lora_{down,up}_{Q,V}.weight` load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from smop_edge.runtime.config import LLMConfig


class LoRAProjection(nn.Linear):
    """`q_proj` / `v_proj` that adds its attention module's LoRA branch to the base projection."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down, up, scale = self.__dict__["lora"]
        return F.linear(x, self.weight, self.bias) + up(down(x)) * scale


def hf_config(cfg: LLMConfig) -> LlamaConfig:
    """The transformers config for our LLM section."""
    scaling = None
    if cfg.rope_scaling is not None:
        r = cfg.rope_scaling
        scaling = {"rope_type": r.rope_type, "factor": r.factor, "low_freq_factor": r.low_freq_factor,
                   "high_freq_factor": r.high_freq_factor,
                   "original_max_position_embeddings": r.original_max_position_embeddings}
    config = LlamaConfig(
        vocab_size=cfg.vocab, hidden_size=cfg.hidden, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta, rope_scaling=scaling,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    config._attn_implementation = "sdpa"
    return config


def build_llm(cfg: LLMConfig) -> LlamaForCausalLM:
    """A `LlamaForCausalLM` for `cfg`, with LoRA attached when `cfg.lora_bottleneck` > 0."""
    llm = LlamaForCausalLM(hf_config(cfg))
    if cfg.lora_bottleneck:
        for layer in llm.model.layers:
            _attach_lora(layer.self_attn, cfg.lora_bottleneck, cfg.lora_scale)
    return llm


def _attach_lora(attn: nn.Module, bottleneck: int, scale: float) -> None:
    for name, letter in (("q_proj", "Q"), ("v_proj", "V")):
        base: nn.Linear = getattr(attn, name)
        down = nn.Linear(base.in_features, bottleneck, bias=False)
        up = nn.Linear(bottleneck, base.out_features, bias=False)
        nn.init.kaiming_uniform_(up.weight, a=5 ** 0.5)
        nn.init.zeros_(down.weight)  # as the authors: the adapter starts as a no-op
        setattr(attn, f"lora_down_{letter}", down)
        setattr(attn, f"lora_up_{letter}", up)
        base.__class__ = LoRAProjection
        base.__dict__["lora"] = (down, up, scale)


def merged_weight(proj: nn.Linear) -> torch.Tensor:
    """The weight of `proj` with its LoRA branch folded in (computed in fp32; the module is untouched)."""
    with torch.no_grad():
        if not isinstance(proj, LoRAProjection):
            return proj.weight.detach().float()
        down, up, scale = proj.__dict__["lora"]
        return proj.weight.float() + (up.weight.float() @ down.weight.float()) * scale


def merge_lora(llm: LlamaForCausalLM) -> None:
    """Fold every LoRA branch into `q_proj` / `v_proj` in place and drop the LoRA modules."""
    for layer in llm.model.layers:
        attn = layer.self_attn
        for name, letter in (("q_proj", "Q"), ("v_proj", "V")):
            proj = getattr(attn, name)
            if not isinstance(proj, LoRAProjection):
                continue
            with torch.no_grad():
                proj.weight.copy_(merged_weight(proj).to(proj.weight.dtype))
            proj.__dict__.pop("lora")
            proj.__class__ = nn.Linear
            delattr(attn, f"lora_down_{letter}")
            delattr(attn, f"lora_up_{letter}")
