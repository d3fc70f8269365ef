"""Projectors: the Llama-AVSR MLP and the Sparse Mixture of Projectors (SMoP) with its router.

Router semantics (authors' code): bias-free linear gate per token, softmax in fp32, top-k, the k
weights renormalised to sum to 1, output = sum_e w_e * expert_e(x). No noise, no capacity, no drops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class MLPProjector(nn.Sequential):
    """Linear(in -> hidden) -> ReLU -> Linear(hidden -> out) [-> LayerNorm(out)]; keys 0, 2, 3."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layer_norm: bool = True) -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)]
        if layer_norm:
            layers.append(nn.LayerNorm(out_dim))
        super().__init__(*layers)


@dataclass
class Routing:
    """One router's decisions for a batch of tokens (kept for the auxiliary losses and tests)."""

    logits: torch.Tensor  # [N, E] fp32
    experts: torch.Tensor  # [N, k] int64, best first
    weights: torch.Tensor  # [N, k] fp32, sum to 1


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax in fp32, top-k, renormalise: returns (weights [.., k] fp32, expert ids [.., k])."""
    probs = F.softmax(logits.float(), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), experts


class SparseMixtureOfProjectors(nn.Module):
    """A pool of MLP experts with one or more routers (`gate`, or `audio_gate` + `video_gate`)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_experts: int, top_k: int,
                 layer_norm: bool = True, routers: tuple[str, ...] = ("gate",)) -> None:
        super().__init__()
        self.top_k = top_k
        self.router_names = routers
        for name in routers:
            setattr(self, name, nn.Linear(in_dim, num_experts, bias=False))
        self.experts = nn.ModuleList(MLPProjector(in_dim, hidden, out_dim, layer_norm) for _ in range(num_experts))

    def forward(self, x: torch.Tensor, router: str = "gate") -> tuple[torch.Tensor, Routing]:
        """x [..., in] -> ([..., out], Routing over the flattened tokens)."""
        flat = x.reshape(-1, x.shape[-1])
        logits = getattr(self, router)(flat).float()
        weights, experts = route(logits, self.top_k)
        out = torch.zeros(flat.shape[0], self.experts[0][2].out_features, dtype=x.dtype, device=x.device)
        for e, expert in enumerate(self.experts):
            hit = experts == e  # [N, k]
            rows = hit.any(dim=-1).nonzero(as_tuple=True)[0]
            if rows.numel():
                w = (weights * hit).sum(dim=-1)[rows].to(x.dtype)
                out.index_add_(0, rows, expert(flat[rows]) * w[:, None])
        return out.reshape(*x.shape[:-1], -1), Routing(logits, experts, weights)


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """Switch-Transformer loss E * sum_e f_e * P_e (1.0 when perfectly balanced).

    f_e: share of the N*k expert assignments that go to e; P_e: mean router probability of e.
    """
    n_experts = routing.logits.shape[-1]
    probs = F.softmax(routing.logits, dim=-1)
    counts = F.one_hot(routing.experts, n_experts).float().sum(dim=(0, 1))
    share = counts / routing.experts.numel()
    return n_experts * (share * probs.mean(dim=0)).sum()


def router_z_loss(routing: Routing) -> torch.Tensor:
    """Mean over tokens of logsumexp(logits)^2: keeps router logits small."""
    return torch.logsumexp(routing.logits, dim=-1).pow(2).mean()
