"""The `smop-edge` command line: the parser assembled from `apps.commands` (one module per command or
small group, its flags beside its `run`), and the one place errors become exit codes. Subcommands import
their heavy parts lazily, so that commands on the runtime path never import torch."""

from __future__ import annotations

import argparse
import os
import sys

from smop_edge.runtime.errors import SmopEdgeError

from .commands import batch, bench, export, inspect, live, pi, recipe, transcribe
from .commands import eval as eval_  # the module, not the builtin

# in the order `smop-edge --help` lists them: inspect init export verify transcribe crop batch live pi synth train
# eval bench
_COMMANDS = (inspect, export, transcribe, batch, live, pi, recipe, eval_, bench)
# the extra that brings each optional top-level module (a command that needs one says which to install)
_EXTRAS = {**dict.fromkeys(("torch", "transformers", "onnx", "onnxscript", "nncf", "optimum", "safetensors",
                            "skimage", "matplotlib"), "export"),
           **dict.fromkeys(("ray", "pyarrow"), "ray"), **dict.fromkeys(("PySide6", "sounddevice"), "app")}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand; each sets `func`, the function that runs it."""
    parser = argparse.ArgumentParser(prog="smop-edge", description="Llama-SMoP / Llama-AVSR on edge devices.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become one-line messages and exit codes (the SmopEdgeError's own, 141 for
    a closed pipe, 130 on Ctrl-C, 1 for anything unexpected)."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141
    except SmopEdgeError as exc:
        print(f"smop-edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("smop-edge: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None or os.environ.get("SMOP_EDGE_DEBUG"):
            raise
        print(f"smop-edge: error: {args.command} needs the [{extra}] extra (pip install 'smop-edge[{extra}]'): "
              f"no module named '{exc.name}'", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback for users; SMOP_EDGE_DEBUG=1 shows it
        if os.environ.get("SMOP_EDGE_DEBUG"):
            raise
        print(f"smop-edge: internal error: {type(exc).__name__}: {exc} (SMOP_EDGE_DEBUG=1 for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
