"""The projector stage as a hand-written ONNX graph from standard ops only (docs/design.md §3).

SMoP, static top-k: router MatMul -> Softmax (fp32) -> TopK -> renormalise -> ScatterElements into a
dense [tokens, E] gate -> every expert (unrolled MatMuls, each with its own LayerNorm) -> weighted
sum. No data-dependent shapes, so the same graph runs on every backend and NPU. Experts are
weight-only quantized; the router and the LayerNorms stay fp32.

Inputs `audio_tokens` [Na, in] / `video_tokens` [Nv, in] (compressed encoder frames); outputs
`audio_embeds` / `video_embeds` [N, H] and, for SMoP, `{m}_router_probs` [N, E]. Routing is per token
with no capacity limit, so JEJR's router over the concatenated tokens equals routing each modality
with the same router: the graph does the latter and shares one set of expert weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from smop_edge.models.llama_smop import LlamaSMoP

from .onnx_graph import GraphBuilder


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _mlp(g: GraphBuilder, x: str, prefix: str, mlp, mode: str) -> str:
    h = g.op("Relu", [g.linear(x, f"{prefix}.0", _np(mlp[0].weight), _np(mlp[0].bias), mode)])
    y = g.linear(h, f"{prefix}.2", _np(mlp[2].weight), _np(mlp[2].bias), mode)
    if len(mlp) > 3:  # LayerNorm: always fp32
        y = g.layer_norm(y, f"{prefix}.3", _np(mlp[3].weight), _np(mlp[3].bias), mlp[3].eps)
    return y


def _smop(g: GraphBuilder, x: str, prefix: str, pool, gate_name: str, top_k: int, mode: str) -> tuple[str, str]:
    logits = g.linear(x, f"{prefix}.{gate_name}", _np(getattr(pool, gate_name).weight), None, "fp32")
    probs = g.op("Softmax", [logits], axis=-1)
    k = g.const("top_k", np.array([top_k], np.int64))
    top_w, top_i = g.op("TopK", [probs, k], n_out=2, axis=-1, largest=1, sorted=1)
    top_w = g.op("Div", [top_w, g.op("ReduceSum", [top_w, g.const("axis_last", np.array([-1], np.int64))],
                                     keepdims=1)])
    zeros = g.op("ConstantOfShape", [g.op("Shape", [probs])], value=onnx.helper.make_tensor(
        "zero", onnx.TensorProto.FLOAT, [1], [0.0]))
    gate = g.op("ScatterElements", [zeros, top_i, top_w], axis=1)
    terms = []
    for e, expert in enumerate(pool.experts):
        y = _mlp(g, x, f"{prefix}.experts.{e}", expert, mode)
        col = g.op("Slice", [gate, g.const(f"e{e}", np.array([e], np.int64)),
                             g.const(f"e{e + 1}", np.array([e + 1], np.int64)), g.const("axis1", np.array([1], np.int64))])
        terms.append(g.op("Mul", [y, col]))
    return g.op("Sum", terms), probs


def build_projector(model: LlamaSMoP, experts: str = "int8", static_tokens: dict[str, int] | None = None
                    ) -> onnx.ModelProto:
    """The projector graph of `model`; `experts` quantizes expert (or MLP) weights: fp32|int8|int4.
    `static_tokens` fixes the token count per modality (NPU variant); otherwise it is symbolic."""
    cfg = model.cfg
    p = cfg.projector
    g = GraphBuilder("projector")
    for m in ("audio", "video"):
        if not getattr(cfg, f"has_{m}"):
            continue
        n = (static_tokens or {}).get(m, f"{m}_tokens")
        x = g.input(f"{m}_tokens", [n, cfg.projector_input_dim(m)])
        if p.kind == "mlp":
            y = _mlp(g, x, f"{m}_proj", getattr(model, f"{m}_proj"), experts)
        else:
            if p.layout == "DEDR":
                pool, prefix, gate = getattr(model, f"{m}_proj"), f"{m}_proj", "gate"
            else:
                pool, prefix = model.audiovisual_proj, "audiovisual_proj"
                gate = "gate" if p.layout == "JEJR" else f"{m}_gate"
            y, probs = _smop(g, x, prefix, pool, gate, p.top_k, experts)
            g.output(probs, f"{m}_router_probs", [n, p.num_experts])
        g.output(y, f"{m}_embeds", [n, cfg.llm.hidden])
    return g.model(doc=f"smop-edge projector: {p.kind} {p.layout if p.kind == 'smop' else ''}, experts {experts}")


def _routers(model: LlamaSMoP, m: str) -> tuple[torch.nn.Module, str | None]:
    """The module that projects modality `m` and, for SMoP, the name of its router (as `build_projector`)."""
    p = model.cfg.projector
    if p.kind == "mlp":
        return getattr(model, f"{m}_proj"), None
    if p.layout == "DEDR":
        return getattr(model, f"{m}_proj"), "gate"
    return model.audiovisual_proj, "gate" if p.layout == "JEJR" else f"{m}_gate"


class DenseProjector(torch.nn.Module):
    """The ONNX graph's computation as a torch module, for exporters that start from torch (LiteRT): the same
    static top-k (the top-k weights spread into a dense [tokens, E] gate by comparison, every expert run,
    weighted sum), the same inputs and outputs in the same order."""

    def __init__(self, model: LlamaSMoP) -> None:
        super().__init__()
        self.modalities = [m for m in ("audio", "video") if getattr(model.cfg, f"has_{m}")]
        self.parts = torch.nn.ModuleList(_routers(model, m)[0] for m in self.modalities)
        self.gates = [_routers(model, m)[1] for m in self.modalities]
        self.top_k = model.cfg.projector.top_k

    def forward(self, first: torch.Tensor, second: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        tokens = [t for t in (first, second) if t is not None]  # one per modality, in `self.modalities` order
        for x, part, gate in zip(tokens, self.parts, self.gates):
            if gate is None:
                out.append(part(x))
                continue
            probs = torch.softmax(getattr(part, gate)(x).float(), dim=-1)
            top_w, top_i = torch.topk(probs, self.top_k, dim=-1)
            top_w = top_w / top_w.sum(dim=-1, keepdim=True)
            experts = torch.arange(probs.shape[-1])
            weights = ((top_i[..., None] == experts).to(x.dtype) * top_w[..., None]).sum(dim=-2)  # [N, E]
            y = sum(expert(x) * weights[:, e:e + 1] for e, expert in enumerate(part.experts))
            out += [probs, y]
        return tuple(out)


def export_dense_projector(model: LlamaSMoP, path: Path, tokens: int | None) -> Path:
    """The projector through `export_module`: a fixed `tokens` per call (the static bundle's chunk), or any."""
    from .torch_export import export_module

    dense = DenseProjector(model)
    names, outputs = [f"{m}_tokens" for m in dense.modalities], []
    for m, gate in zip(dense.modalities, dense.gates):
        outputs += ([f"{m}_router_probs"] if gate else []) + [f"{m}_embeds"]
    example = tuple(torch.randn(tokens or 8, model.cfg.projector_input_dim(m)) for m in dense.modalities)
    dynamic = None if tokens else {n: {0: (n, 1, 4096)} for n in names}
    return export_module(dense, example, path, names, outputs, dynamic)
