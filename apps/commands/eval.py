"""`smop-edge eval`: a bundle's word error rate on a manifest, clean and in noise (apps.evaluate scores
and renders the report). Torch-free."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smop_edge.runtime import DEMO_BUNDLE
from smop_edge.runtime.errors import UsageError

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
    p.add_argument("--against", metavar="REPORT", help="an earlier `eval --json` report (same task, noise and "
                   "seed): each condition's WER difference with a 95 %% paired bootstrap interval over utterances")
    p.add_argument("--json", action="store_true", help="top-level wer (fraction), conditions, per-utterance rows")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate under each condition and print the report, as text or JSON."""
    from smop_edge.runtime.transcribe import progress_bar

    from ..evaluate import check_comparable, compare, evaluate, render_text

    rec = open_bundle(args)
    snrs = [None if s.lower() == "clean" else float_value(s, "--snr") for s in (args.snr or ["clean"])]
    task = args.task or ("avsr" if "avsr" in rec.tasks else rec.tasks[0])
    earlier = read_report(args.against) if args.against else None
    if earlier is not None:
        check_comparable(earlier, task, args.noise, snrs, args.against)
    report = evaluate(rec, args.manifest, task, snrs, args.noise, args.seed, args.crop_cache, args.limit,
                      progress_bar(not args.quiet), str(args.bundle or DEMO_BUNDLE), decoding_options(args))
    if earlier is not None:
        compare(report, earlier, args.against)
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_text(report))
    return 0


def read_report(path: str) -> dict:
    """An earlier `eval --json` report, read before the evaluation so that a bad path fails at once."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--against: cannot read an eval --json report from {path}: {e}") from e
    if not isinstance(report, dict) or not isinstance(report.get("conditions"), list):
        raise UsageError(f"--against: {path} is not an eval --json report")
    return report
