"""What `smop-edge inspect` reports: config with sources, parameter counts, dtypes, key report."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from smop_edge.runtime.tokenizer import load_tokenizer

from .checkpoint import LoadedCheckpoint
from smop_edge.runtime.config import ModelConfig, flatten

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def parameter_counts(shapes: dict[str, tuple[int, ...]], config: ModelConfig) -> dict[str, int]:
    """Parameters per top-level component (BatchNorm statistics excluded, a tied head counted once)."""
    counts: dict[str, int] = defaultdict(int)
    for key, shape in shapes.items():
        if key.endswith(_BUFFER_SUFFIXES):
            continue
        if key == "llm.lm_head.weight" and config.llm.tie_embeddings:
            continue
        counts[key.split(".")[0]] += math.prod(shape)
    return dict(counts)


def inactive_expert_parameters(shapes: dict[str, tuple[int, ...]], config: ModelConfig) -> int:
    """Parameters of the experts a token does not use: (E - k) experts per SMoP pool."""
    p = config.projector
    if p.kind != "smop":
        return 0
    inactive = 0
    for pool in ("audiovisual_proj", "audio_proj", "video_proj"):
        prefix = f"{pool}.experts.0."
        per_expert = sum(math.prod(s) for k, s in shapes.items() if k.startswith(prefix))
        inactive += (p.num_experts - p.top_k) * per_expert
    return inactive


def summarize(loaded: LoadedCheckpoint, tokenizer_path: str | None = None) -> dict[str, Any]:
    ckpt, inferred, report = loaded.file, loaded.inferred, loaded.report
    cfg = inferred.config
    shapes = ckpt.shapes
    counts = parameter_counts(shapes, cfg)
    total = sum(counts.values())
    dtypes: dict[str, Counter] = defaultdict(Counter)
    for key, tensor in ckpt.tensors.items():
        dtypes[key.split(".")[0]][str(tensor.dtype).replace("torch.", "")] += 1
    summary: dict[str, Any] = {
        "checkpoint": str(ckpt.path), "format": ckpt.format, "size_bytes": ckpt.size_bytes,
        "tensors": len(shapes), "zoo_match": inferred.zoo_match, "families": inferred.families,
        "config": cfg.to_dict(), "sources": inferred.sources,
        "parameters": {**counts, "total": total},
        "active_parameters_per_token": total - inactive_expert_parameters(shapes, cfg),
        "dtypes": {k: dict(v) for k, v in dtypes.items()},
        "keys": {"ok": report.ok, "loaded": report.loaded, "missing": report.missing,
                 "unexpected": report.unexpected, "shape_mismatch": report.mismatched,
                 "dropped_leftovers": report.dropped},
    }
    if tokenizer_path:
        tok = load_tokenizer(tokenizer_path, expected_size=cfg.llm.vocab)
        summary["tokenizer"] = {"path": tokenizer_path, "size": tok.vocab_size,
                                "added_ids": {t: tok.token_id(t) for t in cfg.tokens.added},
                                "bos": tok.token_id(cfg.tokens.bos), "eos": tok.token_id(cfg.tokens.eos)}
    return summary


def _fmt(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n:,}"


def render_text(s: dict[str, Any]) -> str:
    cfg = s["config"]
    lines = [f"checkpoint  {s['checkpoint']}  ({s['format']}, {s['size_bytes'] / 1e6:.1f} MB, {s['tensors']} tensors)"]
    if s["zoo_match"]:
        lines.append(f"zoo match   {s['zoo_match']}")
    else:
        fams = ", ".join(f"{k}={v}" for k, v in s["families"].items()) or "none"
        lines.append(f"zoo match   none (component families: {fams}; other values are documented defaults)")
    p = cfg["projector"]
    proj = f"SMoP {p['layout']} E={p['num_experts']} k={p['top_k']}" if p["kind"] == "smop" else "MLP"
    lines.append(f"model       tasks {','.join(cfg['tasks'])}; projector {proj}; "
                 f"LLM {cfg['llm']['layers']} layers x {cfg['llm']['hidden']}")
    lines.append("")
    lines.append(f"{'field':44s} {'value':28s} source")
    for path, value in flatten(cfg).items():
        lines.append(f"{path:44s} {str(value):28s} {s['sources'].get(path, '')}")
    lines.append("")
    lines.append("parameters")
    for comp, n in s["parameters"].items():
        dt = ", ".join(f"{d}" for d in s["dtypes"].get(comp, {})) if comp != "total" else ""
        lines.append(f"  {comp:20s} {_fmt(n):>10s}  {dt}")
    lines.append(f"  {'active per token':20s} {_fmt(s['active_parameters_per_token']):>10s}")
    k = s["keys"]
    lines.append("")
    status = "OK" if k["ok"] else "MISMATCH"
    lines.append(f"keys        {status}: {k['loaded']} loaded, {len(k['missing'])} missing, "
                 f"{len(k['unexpected'])} unexpected, {len(k['shape_mismatch'])} shape mismatches")
    for title in ("missing", "unexpected", "shape_mismatch"):
        for key in k[title][:10]:
            lines.append(f"  {title}: {key}")
    if k["dropped_leftovers"]:
        lines.append(f"  dropped training leftovers: {', '.join(k['dropped_leftovers'])}")
    if "tokenizer" in s:
        t = s["tokenizer"]
        lines.append(f"tokenizer   {t['path']}: {t['size']} tokens, bos {t['bos']}, eos {t['eos']}, "
                     f"added {t['added_ids']}")
    return "\n".join(lines)
