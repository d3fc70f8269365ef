"""`smop-edge inspect` (a checkpoint's inferred configuration and key report) and `smop-edge init`
(a random-weight checkpoint of a zoo configuration): the checkpoint side of bring-your-own-model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_override_flags, overrides


def register(sub: argparse._SubParsersAction) -> None:
    """Add `inspect` and `init`."""
    _add_inspect(sub)
    _add_init(sub)


# ---- inspect ----------------------------------------------------------------------------------------
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    """`inspect`: checkpoint, tokenizer to check, output and config-override flags."""
    p = sub.add_parser("inspect", help="show a checkpoint's inferred configuration, sizes and key report",
                       description="Infer a checkpoint's configuration from its shapes (zoo match, "
                                   "defaults, overrides) and check its keys strictly.")
    p.add_argument("checkpoint", help=".pth / Lightning .ckpt / .safetensors")
    p.add_argument("--tokenizer", metavar="JSON", help="the base LLM's tokenizer.json to check against the model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_override_flags(p)
    p.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    """Print the summary; exit 3 when the checkpoint's keys do not fit the inferred model."""
    from smop_edge.models.checkpoint import analyze
    from smop_edge.models.inspection import render_text, summarize

    loaded = analyze(args.checkpoint, overrides(args))
    summary = summarize(loaded, args.tokenizer)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render_text(summary))
    if not loaded.report.ok:
        print(f"smop-edge: error: checkpoint keys do not fit the model: {loaded.report.describe()}",
              file=sys.stderr)
        return 3
    return 0


# ---- init -------------------------------------------------------------------------------------------
def _add_init(sub: argparse._SubParsersAction) -> None:
    """`init`: zoo entry, output files, vocabulary, dtype and seed."""
    p = sub.add_parser("init", help="write a randomly initialised checkpoint of a zoo configuration",
                       description="Random weights with the official key names: for tests, demos and "
                                   "benchmarks at real scale. Not a trained model.")
    p.add_argument("zoo", help="zoo entry, e.g. tiny-jejr or smop-1b-jejr")
    p.add_argument("--out", required=True, help="output file (.pth, .ckpt for Lightning style, .safetensors)")
    p.add_argument("--tokenizer-out", metavar="JSON", help="also write a base tokenizer: a small trained one "
                   "that sizes the vocabulary (tiny configurations), or a word-level stand-in of the real "
                   "base tokenizer's size (real-size configurations; for benchmarks, not text)")
    p.add_argument("--vocab", type=int, default=320, help="target base vocabulary for --tokenizer-out")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    """Write the checkpoint (and the base tokenizer, when asked) and say what was written."""
    import torch

    from smop_edge.models import zoo
    from smop_edge.models.checkpoint import random_init, save_checkpoint
    from smop_edge.models.tokenizer_builder import base_tokenizer_for

    config = zoo.get(args.zoo)
    for out in (args.out, args.tokenizer_out):
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    if args.tokenizer_out:
        base_tokenizer_for(config, args.vocab).save(args.tokenizer_out)
    model = random_init(config, args.seed)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    save_checkpoint(model, args.out, lightning=args.out.endswith(".ckpt"), dtype=dtype)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {config.name}, {n:,} parameters ({args.dtype}), random weights")
    if args.tokenizer_out:
        print(f"wrote {args.tokenizer_out}: base tokenizer, {config.llm.vocab - 5} tokens")
    return 0
