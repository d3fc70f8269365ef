"""torch -> ONNX through `torch.onnx.export(dynamo=True)`, quietly and with named dynamic axes."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch


def export_module(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                  input_names: list[str], output_names: list[str],
                  dynamic: dict[str, dict[int, tuple[str, int, int]]] | None = None,
                  external_data: bool | None = None) -> Path:
    """Export `module` to `path`; weights go to an external file when asked or when over 2 GB.

    `dynamic` maps an input name to {axis: (dim name, min, max)}; axes not listed are static.
    """
    dims: dict[str, torch.export.Dim] = {}
    shapes = None
    if dynamic:
        shapes = {}
        for name in input_names:
            axes = dynamic.get(name, {})
            shapes[name] = {axis: dims.setdefault(d, torch.export.Dim(d, min=lo, max=hi))
                            for axis, (d, lo, hi) in axes.items()} or None
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), example, dynamo=True, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=shapes, optimize=True,
                                    verbose=False)
    if external_data is None:
        external_data = _too_big_for_protobuf(module)
    program.save(str(path), external_data=external_data)
    return path


def _too_big_for_protobuf(module: torch.nn.Module) -> bool:
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    return size > 1_800_000_000
