"""Where an export's model comes from: a checkpoint file, or random weights of a configuration, each
paired with its base tokenizer and described by the `source` record the manifest keeps. One place, so
that `smop-edge export` and the benchmark's exported variants resolve a model the same way."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smop_edge.models.checkpoint import load_model, random_init
from smop_edge.runtime.config import ModelConfig
from smop_edge.runtime.errors import CheckpointError
from smop_edge.runtime.tokenizer import TextTokenizer, load_tokenizer

if TYPE_CHECKING:
    from smop_edge.models.llama_smop import LlamaSMoP


def non_finite(model: "LlamaSMoP") -> list[str]:
    """Names of the model's floating-point tensors that hold NaN or infinite values."""
    import torch

    return [name for name, t in model.state_dict().items()
            if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all())]


def load_source(checkpoint: str | Path | ModelConfig, tokenizer: str | Path,
                overrides: dict[str, Any] | None = None,
                seed: int = 0) -> tuple[LlamaSMoP, TextTokenizer, dict[str, Any]]:
    """(model, tokenizer, manifest `source`) of a checkpoint file (memory-mapped in its own dtype, its
    config inferred with `overrides`; the tokenizer must fit its vocabulary), or of a configuration
    (random weights from `seed`, its vocabulary sized to the tokenizer's: a base tokenizer of any size
    will do)."""
    if isinstance(checkpoint, ModelConfig):
        tok = load_tokenizer(tokenizer)
        config = copy.deepcopy(checkpoint)
        config.llm.vocab = tok.vocab_size
        return random_init(config, seed), tok, {"zoo": config.name, "random_init": True, "seed": seed}
    model, loaded = load_model(checkpoint, overrides, dtype=None)  # stays memory-mapped
    bad = non_finite(model)
    if bad:
        raise CheckpointError(f"{checkpoint}: {len(bad)} tensor(s) hold NaN or infinite values "
                              f"(e.g. {', '.join(bad[:3])}): nothing sensible can be exported from it")
    tok = load_tokenizer(tokenizer, expected_size=model.cfg.llm.vocab)
    return model, tok, {"checkpoint": Path(checkpoint).name, "size_bytes": loaded.file.size_bytes,
                        "zoo_match": loaded.inferred.zoo_match}
