"""`smop-edge batch`: transcribe an archive (folders, globs, manifests) into one output per file, on every
core or on a Ray cluster; reruns skip what is done. The runtime path: nothing here imports torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_backend_flags, add_decoding_flags, decoding_options, open_bundle

EXIT_SOME_FAILED = 7


def register(sub: argparse._SubParsersAction) -> None:
    """Add `batch`."""
    p = sub.add_parser("batch", help="transcribe many files on every core, or on a Ray cluster",
                       description="Transcribe folders (searched recursively), globs and manifests (JSONL with a "
                                   "\"path\" per line, CSV with a path column) into DIR: NAME.json per file (as "
                                   "`transcribe --json`) and NAME.FORMAT with --format, keeping the folder "
                                   "structure. A file whose JSON is current (the same file size and time, bundle "
                                   "and settings) is skipped, given only the formats it lacks, so a rerun after a "
                                   "crash or Ctrl-C goes on where it stopped; a file that fails is listed in "
                                   "DIR/batch-summary.json and never stops the batch. Exit codes: 0 every file "
                                   "done, 2 usage, 3 an input not found, 4 invalid bundle, 7 finished but some "
                                   "files failed, 130 interrupted.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="media files, folders, globs (quoted), manifests")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--format", action="append", choices=["txt", "srt", "vtt"], default=[],
                   help="also write NAME.txt / .srt / .vtt (repeatable)")
    p.add_argument("--task", choices=["auto", "asr", "vsr", "avsr"], default="auto")
    add_backend_flags(p, ["onnxruntime", "openvino"])
    pool = p.add_argument_group("workers")
    pool.add_argument("--workers", type=int,
                      help="worker processes (actors with --ray), each holding a recognizer (default: one per "
                           "core with --threads 1, at most one per 1.2 GB of free memory)")
    pool.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                      help="run on Ray Data (the [ray] extra): the cluster this machine belongs to (RAY_ADDRESS, or "
                           "one started here with `ray start`), else a new local one; or ADDRESS (host:6379, auto, "
                           "ray://host:10001); every node needs the inputs and --bundle at the same paths")
    pool.add_argument("--force", action="store_true", help="transcribe every file again, done or not")
    add_decoding_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    """Check the bundle here (a bad one is one error, not one per file), then run the batch."""
    from smop_edge.runtime.errors import UsageError

    from ..batch import Recognition, run_batch

    if (args.workers is not None and args.workers < 1) or (args.threads is not None and args.threads < 1):
        raise UsageError("--workers and --threads must be at least 1")
    rec = open_bundle(args)
    # the engine as resolved here (`auto` picks by machine): a stamp names what transcribed the file
    recognition = Recognition(args.bundle, rec.bundle.digest, rec.backend, args.device, 1, args.precision,
                              None if args.task == "auto" else args.task, decoding_options(args),
                              exact=not args.int8_activations)
    out = Path(args.out)
    summary = run_batch(args.inputs, out, recognition, sorted(set(args.format)), args.workers,
                        args.threads, use_ray=args.ray is not None,
                        ray_address=None if args.ray == "local" else args.ray, force=args.force,
                        show_progress=not args.quiet)
    for failure in summary["failed"]:
        print(f"smop-edge: error: {failure['file']} (exit {failure['exit_code']}): {failure['error']}",
              file=sys.stderr)
    print(f"batch: {summary['ok']} done, {len(summary['failed'])} failed, {summary['skipped_as_done']} skipped "
          f"as done before; {summary['media_hours']:.3f} h of media in {summary['wall_seconds']:.1f} s "
          f"({summary['engine']}, workers: {summary.get('workers', 0)}); summary: {out / 'batch-summary.json'}",
          file=sys.stderr)
    return EXIT_SOME_FAILED if summary["failed"] else 0
