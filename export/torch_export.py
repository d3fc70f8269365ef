"""torch -> ONNX through `torch.onnx.export(dynamo=True)`, quietly and with named dynamic axes; or, for a
`.tflite` path, torch -> LiteRT through litert-torch (static shapes, named signature inputs and outputs); or,
for a `.pte` path, torch -> ExecuTorch (export.executorch; dynamic axes kept)."""

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
    if path.suffix == ".tflite":
        return export_litert(module, example, path, input_names, output_names, dynamic)
    if path.suffix == ".pte":
        from .executorch import export_executorch

        return export_executorch(module, example, path, input_names, output_names, dynamic)
    shapes = dynamic_shapes(input_names, dynamic)
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


def dynamic_shapes(input_names: list[str], dynamic: dict[str, dict[int, tuple[str, int, int]]] | None,
                   bounds: dict[str, int] | None = None) -> dict[str, dict[int, torch.export.Dim] | None] | None:
    """`dynamic` ({input: {axis: (dim name, min, max)}}) as torch.export's dynamic shapes per input name, one
    Dim per dim name (shared across inputs); `bounds` lowers the maxima of the dims it names."""
    if not dynamic:
        return None
    dims: dict[str, torch.export.Dim] = {}
    bounds = bounds or {}
    return {name: {axis: dims.setdefault(d, torch.export.Dim(d, min=lo, max=min(hi, bounds.get(d, hi))))
                   for axis, (d, lo, hi) in dynamic.get(name, {}).items()} or None for name in input_names}


def _too_big_for_protobuf(module: torch.nn.Module) -> bool:
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    return size > 1_800_000_000


class _Named(torch.nn.Module):
    """Keyword inputs and a dict of outputs, so that the LiteRT signature carries the graph's own names."""

    def __init__(self, inner: torch.nn.Module, input_names: list[str], output_names: list[str]) -> None:
        super().__init__()
        self.inner, self.input_names, self.output_names = inner, input_names, output_names

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.inner(*(inputs[name] for name in self.input_names))
        return dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))


def export_litert(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                  output_names: list[str], dynamic: dict | None = None) -> Path:
    """`module` as a LiteRT flatbuffer with one signature whose inputs and outputs have the given names
    (64-bit integer inputs become 32-bit: LiteRT's own choice). Every shape is the example's."""
    from smop_edge.runtime.errors import UsageError

    if dynamic:
        raise UsageError("LiteRT graphs have static shapes here: the litert format exports the static bundle")
    try:
        import litert_torch
    except ModuleNotFoundError as exc:
        raise UsageError(f"--format litert needs litert-torch 0.10 and numpy 2 ({exc}); scripts/setup.sh makes "
                         "that environment in build/envs/mobile") from None
    named = _Named(module.eval(), input_names, output_names).eval()
    logging.getLogger().setLevel(logging.ERROR)  # litert-torch reports every conversion step on the root logger
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        litert_torch.convert(named, sample_args=(), sample_kwargs=dict(zip(input_names, example))).export(str(path))
    return path
