"""`smop-edge export` (a checkpoint, or a zoo configuration's random weights, to an ONNX or OpenVINO
bundle) and `smop-edge verify` (a bundle's checksums and self-test)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smop_edge.runtime.errors import UsageError

from .common import add_override_flags, ensure_backend, overrides


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export` and `verify`."""
    _add_export(sub)
    _add_verify(sub)


# ---- export -----------------------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> None:
    """`export`: source, output, quantization, audio mode, static shapes and config-override flags."""
    p = sub.add_parser("export", help="export a checkpoint to an ONNX or OpenVINO bundle",
                       description="One graph per stage, quantized experts, KV-cache decoder, parity "
                                   "measured against the torch reference and written into the manifest.")
    p.add_argument("checkpoint", help="checkpoint file, or a zoo name with --random-init")
    p.add_argument("--tokenizer", help="the base LLM's tokenizer.json (the AVSR tokens are added)")
    p.add_argument("--out", required=True, help="bundle directory to create")
    p.add_argument("--format", choices=["onnx", "openvino", "ort", "litert", "executorch"], default="onnx",
                   help="ort: ONNX Runtime Mobile's format, converted from the ONNX graphs, with the operator list "
                        "of a reduced build; litert: LiteRT (.tflite) from torch, static; executorch: "
                        "ExecuTorch (.pte, XNNPACK) from torch (docs/mobile.md)")
    p.add_argument("--experts", choices=["int8", "int4", "fp32"], default="int8",
                   help="expert / MLP projector weights (router and LayerNorms stay fp32)")
    p.add_argument("--llm", choices=["int8", "int4", "fp32"], default="int8", help="decoder weights")
    p.add_argument("--encoders", choices=["fp32", "int8"], default="fp32", help="encoder weights")
    p.add_argument("--audio-mode", choices=["faithful", "fast"], default="faithful",
                   help="faithful: 30 s padded audio, exact; fast: unpadded (accuracy cost measured)")
    p.add_argument("--static", action="store_true", help="static shapes everywhere (NPU variant; always for litert)")
    p.add_argument("--video-buckets", metavar="N,N", help="--static: video lengths in frames (default 250,750)")
    p.add_argument("--audio-buckets", metavar="N,N",
                   help="--static with --audio-mode fast: mel-frame lengths (default 1000,3000)")
    p.add_argument("--kv-capacity", type=int, help="--static: decoder cache positions (default 1024)")
    p.add_argument("--force", action="store_true", help="replace the bundle already in the output directory")
    p.add_argument("--allow-drift", action="store_true",
                   help="keep a bundle whose parity with the torch reference breaks the thresholds (else exit 6)")
    p.add_argument("--random-init", action="store_true", help="CHECKPOINT is a zoo name: random weights")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    p.add_argument("--json", action="store_true", help="print stages, quantization and parity as JSON")
    add_override_flags(p)
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Check the options, resolve the model and tokenizer, write the bundle (and print its JSON summary)."""
    from smop_edge.export.bundle import ExportOptions, export_bundle
    from smop_edge.export.source import load_source

    options = ExportOptions(format=args.format, experts=args.experts, llm=args.llm, encoders=args.encoders,
                            audio_mode=args.audio_mode, static=args.static or args.format == "litert",  # LiteRT: static
                            force=args.force, allow_drift=args.allow_drift)
    for name in ("audio_buckets", "video_buckets"):
        if getattr(args, name):
            setattr(options, name, _int_list(getattr(args, name), "--" + name.replace("_", "-")))
    if args.kv_capacity:
        options.kv_capacity = args.kv_capacity
    options.validate()
    if not args.tokenizer:
        raise UsageError("--tokenizer is required: the base LLM's tokenizer.json")
    if args.random_init:
        from smop_edge.models import zoo

        model, tokenizer, source = load_source(zoo.get(args.checkpoint), args.tokenizer, seed=args.seed)
    else:
        model, tokenizer, source = load_source(args.checkpoint, args.tokenizer, overrides(args))
    manifest = export_bundle(model, tokenizer, Path(args.out), options, source)
    if args.json:
        data = manifest.to_dict()
        print(json.dumps({"bundle": args.out, **{k: data[k] for k in ("stages", "parity", "quantization")}}, indent=2))
    return 0


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    """`--video-buckets 250,750` as (250, 750), or a usage error naming `flag`."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers, got {text!r}") from None


# ---- verify -----------------------------------------------------------------------------------------
def _add_verify(sub: argparse._SubParsersAction) -> None:
    """`verify`: bundle and backend."""
    p = sub.add_parser("verify", help="check a bundle's sha256 sums and rerun its self-test",
                       description="Exit 0 only when the manifest and every file match their sha256 and the "
                                   "bundle reproduces its own tokens for its self-test input as recorded at export "
                                   "(agreement with the torch reference is shown beside them).")
    p.add_argument("bundle")
    p.add_argument("--digest", metavar="SHA256", help="also require the manifest's sha256 to be this value (as "
                                                      "printed by export and verify): it fixes every file")
    p.add_argument("--backend", choices=["onnxruntime", "openvino", "litert", "executorch"],
                   help="default: the bundle's format")
    p.add_argument("--device", default="CPU", help="OpenVINO device for the self-test: CPU, GPU, NPU (a static "
                                                   "bundle's NPU check: scripts/npu_readiness.py)")
    p.add_argument("--against", metavar="BUNDLE", help="the run-check of a converted bundle (e.g. --format ort): "
                   "its self-test and the sample clips through it and through BUNDLE, the one it was made beside; "
                   "exit 4 unless every input gives the same tokens")
    p.add_argument("--samples", metavar="MANIFEST", help="--against: clips (a manifest as eval takes: path and text "
                   "per line; default: the demo model's sample clips)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Print the self-test's result (runtime.verify); a differing transcript is a bundle error (exit 4)."""
    from smop_edge.runtime.errors import BundleError
    from smop_edge.runtime.verify import self_test

    ensure_backend(args.backend, args.bundle)
    result = self_test(args.bundle, args.backend, args.digest, args.device)
    report = result.to_dict()
    if not args.json:
        print(result.describe())
    if not result.passed:
        raise BundleError(f"{args.bundle}: self-test transcript differs from the one recorded at export")
    if args.against:
        differ = _run_check(args, report)
        if differ:
            raise BundleError(f"{args.bundle}: tokens differ from {args.against}'s on {', '.join(differ)}")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _run_check(args: argparse.Namespace, report: dict) -> list[str]:
    """`verify --against`: print each input's comparison (or add it to the JSON report); the names that differ."""
    from smop_edge.recipe.corpus import read_manifest
    from smop_edge.runtime import DEMO_BUNDLE
    from smop_edge.runtime.verify import compare_with_source

    rows = read_manifest(args.samples or DEMO_BUNDLE.parent / "samples" / "manifest.jsonl")
    found = compare_with_source(args.bundle, args.against, [Path(r["file"]) for r in rows], args.backend)
    report["against"] = {"bundle": args.against, "inputs": [
        {"input": c.name, "task": c.task, "tokens_equal": c.equal, "text": c.text} for c in found]}
    if not args.json:
        print(f"run-check against {args.against}:")
        for c in found:
            print(f"  {c.name:<16} {c.task:<5} {'same tokens' if c.equal else 'TOKENS DIFFER'}  {c.text!r}")
    return [c.name for c in found if not c.equal]
