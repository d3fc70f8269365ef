"""`smop-edge eval`: a bundle's word error rate on a manifest, clean and in noise (apps.evaluate scores
and renders the report). Torch-free."""

from __future__ import annotations

import argparse
import json

from smop_edge.runtime import DEMO_BUNDLE

from .common import add_backend_flags, add_decoding_flags, decoding_options, float_value, open_bundle


def register(sub: argparse._SubParsersAction) -> None:
    """Add `eval`."""
    p = sub.add_parser("eval", help="word error rate of a bundle on a manifest, clean and in noise",
                       description="Corpus-level WER (lowercase, whitespace words). Noise is mixed into the "
                                   "clean audio at each --snr (seeded); mouth crops are cached once.")
    p.add_argument("manifest", help="manifest.jsonl (rows with path relative to it and text)")
    p.add_argument("--task", choices=["asr", "vsr", "avsr"], help="default: avsr if the bundle has it")
    p.add_argument("--snr", nargs="+", metavar="DB", help="SNRs in dB, or 'clean' (default: clean)")
    p.add_argument("--noise", default="babble", help="babble, white, pink or an audio file")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--limit", type=int, help="first N rows only")
    p.add_argument("--crop-cache", help="mouth-crop cache folder (default: crops/ next to the manifest)")
    add_backend_flags(p, ["onnxruntime", "openvino"])
    add_decoding_flags(p)
    p.add_argument("--json", action="store_true", help="top-level wer (fraction), conditions, per-utterance rows")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate under each condition and print the report, as text or JSON."""
    from smop_edge.runtime.transcribe import progress_bar

    from ..evaluate import evaluate, render_text

    rec = open_bundle(args)
    snrs = [None if s.lower() == "clean" else float_value(s, "--snr") for s in (args.snr or ["clean"])]
    task = args.task or ("avsr" if "avsr" in rec.tasks else rec.tasks[0])
    report = evaluate(rec, args.manifest, task, snrs, args.noise, args.seed, args.crop_cache, args.limit,
                      progress_bar(not args.quiet), str(args.bundle or DEMO_BUNDLE), decoding_options(args))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_text(report))
    return 0
