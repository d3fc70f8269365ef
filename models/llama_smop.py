"""The whole Llama-AVSR / Llama-SMoP model, with the authors' top-level attribute names
(`audio_encoder`, `video_encoder`, `audio_proj`, `video_proj`, `audiovisual_proj`, `llm`)."""

from __future__ import annotations

import torch
from torch import nn

from smop_edge.runtime.prompt import Segment

from .audio_encoder import AudioEncoder
from .compression import compress
from smop_edge.runtime.config import ModelConfig
from .llm import build_llm
from .projector import MLPProjector, Routing, SparseMixtureOfProjectors
from .video_encoder import VideoEncoder


class LlamaSMoP(nn.Module):
    """Encoders -> compression -> projector(s) -> Llama. Which projector modules exist follows
    the config: MLP or DEDR: `audio_proj` / `video_proj`; JEJR / JEDR: `audiovisual_proj`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.audio_encoder = AudioEncoder(cfg.audio_encoder) if cfg.has_audio else None
        self.video_encoder = VideoEncoder(cfg.video_encoder) if cfg.has_video else None
        p, hidden = cfg.projector, cfg.llm.hidden
        modalities = [m for m, present in (("audio", cfg.has_audio), ("video", cfg.has_video)) if present]
        if p.kind == "smop" and p.layout in ("JEJR", "JEDR"):
            routers = ("gate",) if p.layout == "JEJR" else tuple(f"{m}_gate" for m in modalities)
            self.audiovisual_proj = SparseMixtureOfProjectors(
                cfg.projector_input_dim(modalities[0]), p.hidden, hidden, p.num_experts, p.top_k,
                p.layer_norm, routers)
        else:
            for m in modalities:
                dim = cfg.projector_input_dim(m)
                proj = (MLPProjector(dim, p.hidden, hidden, p.layer_norm) if p.kind == "mlp" else
                        SparseMixtureOfProjectors(dim, p.hidden, hidden, p.num_experts, p.top_k, p.layer_norm))
                setattr(self, f"{m}_proj", proj)
        self.llm = build_llm(cfg.llm)

    # ---- stages -------------------------------------------------------------------------------
    def encode_audio(self, mel: torch.Tensor, keep_frames: int, faithful: bool = True) -> torch.Tensor:
        """Log-mel [B, n_mels, frames] -> the first `keep_frames` encoder frames [B, keep, d]."""
        return self.audio_encoder.encode(mel, faithful)[:, :keep_frames]

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised mouth crops [B, T, 88, 88] -> [B, T, d]."""
        return self.video_encoder(frames)

    def project(self, audio: torch.Tensor | None, video: torch.Tensor | None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Routing]]:
        """Compress and project encoder outputs to LLM embeddings; JEJR routes the concatenated
        audio+video tokens with one router, then splits them again."""
        cfg = self.cfg
        a = compress(audio, cfg.audio_compression) if audio is not None else None
        v = compress(video, cfg.video_compression) if video is not None else None
        return self.project_tokens(a, v)

    def project_tokens(self, a: torch.Tensor | None, v: torch.Tensor | None
                       ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Routing]]:
        """The projector(s) on already compressed tokens [B, N, D] per modality."""
        cfg = self.cfg
        routings: list[Routing] = []
        if hasattr(self, "audiovisual_proj"):
            proj = self.audiovisual_proj
            if cfg.projector.layout == "JEJR":
                parts = [x for x in (a, v) if x is not None]
                out, routing = proj(torch.cat(parts, dim=1), "gate")
                routings.append(routing)
                if a is not None and v is not None:
                    return out[:, : a.shape[1]], out[:, a.shape[1]:], routings
                return (out, None, routings) if a is not None else (None, out, routings)
            results = []
            for x, name in ((a, "audio_gate"), (v, "video_gate")):
                if x is None:
                    results.append(None)
                    continue
                out, routing = proj(x, name)
                routings.append(routing)
                results.append(out)
            return results[0], results[1], routings
        results = []
        for x, m in ((a, "audio"), (v, "video")):
            if x is None:
                results.append(None)
                continue
            out = getattr(self, f"{m}_proj")(x)
            if isinstance(out, tuple):
                out, routing = out
                routings.append(routing)
            results.append(out)
        return results[0], results[1], routings

    def assemble_prefix(self, segments: list[Segment], audio_tokens: torch.Tensor | None,
                        video_tokens: torch.Tensor | None) -> torch.Tensor:
        """Concatenate token embeddings and projected tokens in `segments` order: [B, L, H]."""
        embed = self.llm.get_input_embeddings()
        slots = {"audio": audio_tokens, "video": video_tokens}
        batch = next(t.shape[0] for t in slots.values() if t is not None) if any(
            t is not None for t in slots.values()) else 1
        pieces = []
        for seg in segments:
            if seg.modality is not None:
                tokens = slots[seg.modality]
                if tokens is None:
                    raise ValueError(f"prefix needs {seg.modality} tokens but none were given")
                pieces.append(tokens)
            elif seg.ids:
                ids = torch.tensor(seg.ids, dtype=torch.long).expand(batch, -1)
                pieces.append(embed(ids))
        dtype = embed.weight.dtype
        return torch.cat([p.to(dtype) for p in pieces], dim=1)
