"""Flag groups and argument checks that several commands share: the bundle and backend, the decoding
search, and the config values a checkpoint's shapes cannot tell. Imports nothing heavy, so that every
command's `--help` stays torch-free."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from smop_edge.runtime.errors import UsageError

if TYPE_CHECKING:
    from smop_edge.runtime.decoding import DecodingOptions
    from smop_edge.runtime.recognizer import Recognizer


# ---- bundle and backend (transcribe, eval) -----------------------------------------------------------
def add_backend_flags(p: argparse.ArgumentParser, backends: list[str]) -> None:
    """`--bundle`, `--backend` (`auto` or one of `backends`), and the engine's device, precision and threads."""
    p.add_argument("--bundle", help="bundle directory (default: the demo bundle)")
    p.add_argument("--backend", choices=["auto", *backends], default="auto",
                   help="auto (default): OpenVINO for ONNX bundles on x86-64 (measured fastest), else the "
                        "bundle format's own engine")
    p.add_argument("--device", default="CPU", help="OpenVINO device: CPU, NPU, GPU, AUTO")
    p.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32", help="OpenVINO inference precision")
    p.add_argument("--int8-activations", action="store_true",
                   help="let OpenVINO quantize activations to int8 beside int8/int4 weights (dynamic quantization): "
                        "faster decode steps, inexact (ONNX Runtime computes an ONNX bundle's int8/int4 LLM in int8 "
                        "anyway)")
    p.add_argument("--threads", type=int, help="CPU threads")


def ensure_backend(backend: str | None, bundle: str | None) -> None:
    """Register the ExecuTorch backend (it imports torch, so it lives in the export package) when `backend`, or
    the format of `bundle` by default, asks for it."""
    from smop_edge.runtime.bundle import load_bundle
    from smop_edge.runtime.manifest import resolve_backend

    if backend in (None, "auto") and bundle is not None:
        backend = resolve_backend(backend or "auto", load_bundle(bundle, verify=False).manifest.format)
    if backend == "executorch":
        import smop_edge.export.executorch  # noqa: F401 - registers the backend


def open_bundle(args: argparse.Namespace) -> Recognizer:
    """The Recognizer of `--bundle` (default: the demo bundle) on the chosen backend."""
    from smop_edge.runtime import DEMO_BUNDLE, load_recognizer

    ensure_backend(args.backend, args.bundle or DEMO_BUNDLE)
    return load_recognizer(args.bundle, backend=args.backend, device=args.device, threads=args.threads,
                           precision=args.precision, exact=not args.int8_activations)


# ---- decoding (transcribe, eval) ----------------------------------------------------------------------
def add_decoding_flags(p: argparse.ArgumentParser) -> None:
    """`--beams`, `--length-penalty` and `--max-new-tokens`."""
    p.add_argument("--beams", type=int, default=1, help="beam width (1: greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search: finished hypotheses compare log-probability / length ** this")
    p.add_argument("--max-new-tokens", type=int, default=32)


def decoding_options(args: argparse.Namespace) -> DecodingOptions:
    """The search `--beams`, `--length-penalty` and `--max-new-tokens` ask for (checked here: usage errors)."""
    from smop_edge.runtime.decoding import DecodingOptions

    if args.beams < 1 or args.max_new_tokens < 1:
        raise UsageError("--beams and --max-new-tokens must be at least 1")
    return DecodingOptions(beams=args.beams, max_new_tokens=args.max_new_tokens, length_penalty=args.length_penalty)


# ---- checkpoint config overrides (inspect, export) ----------------------------------------------------
def add_override_flags(p: argparse.ArgumentParser) -> None:
    """The config values a checkpoint's shapes cannot tell, as a sidecar JSON or single flags."""
    g = p.add_argument_group("values a checkpoint's shapes cannot tell (override zoo/defaults)")
    g.add_argument("--config", metavar="JSON", help="sidecar with any config fields, e.g. {\"llm\": {\"heads\": 16}}")
    g.add_argument("--audio-rate", type=int, help="audio avg-pool rate (default: zoo, else 4)")
    g.add_argument("--video-rate", type=int, help="video avg-pool rate (default: zoo, else 2)")
    g.add_argument("--top-k", type=int, help="experts per token for SMoP (default: zoo, else 2)")
    g.add_argument("--tasks", help="comma-separated tasks the model supports (asr,vsr,avsr)")
    g.add_argument("--video-post-ln", action="store_true", help="AV-HuBERT is post-LN (Base-style)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides the flags of `add_override_flags` give, merged over the `--config` sidecar."""
    from smop_edge.models.checkpoint import load_overrides

    flags = {
        "audio_compression.rate": args.audio_rate,
        "video_compression.rate": args.video_rate,
        "projector.top_k": args.top_k,
        "tasks": args.tasks.split(",") if args.tasks else None,
        "video_encoder.layer_norm_first": False if args.video_post_ln else None,
    }
    return load_overrides(args.config, flags)


# ---- values -------------------------------------------------------------------------------------------
def float_value(text: str, flag: str) -> float:
    """`text` as a number, or a usage error naming `flag` (eval's --snr, bench's --seconds)."""
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{flag} takes numbers (dB) or 'clean', not {text!r}") from None
