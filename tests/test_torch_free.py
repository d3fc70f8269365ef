"""The runtime must never import torch (docs/design.md §3)."""

import pkgutil
import subprocess
import sys

import smop_edge.runtime


def test_runtime_modules_the_cli_entry_and_eval_do_not_import_torch():
    modules = [f"smop_edge.runtime.{m.name}" for m in pkgutil.iter_modules(smop_edge.runtime.__path__)]
    assert "smop_edge.runtime.features" in modules and "smop_edge.runtime.decoding" in modules
    code = ("import sys, importlib\n"
            f"for m in {modules + ['smop_edge.apps.cli', 'smop_edge.apps.evaluate']!r}: importlib.import_module(m)\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
            "assert not bad, bad\n"
            "from smop_edge.apps.cli import build_parser; build_parser()\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
