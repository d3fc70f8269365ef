"""ExecuTorch (`--format executorch`): each stage's torch module through `torch.export` (the ONNX path's dynamic
dimensions kept), lowered to XNNPACK and saved as a `.pte` program; and the session that runs such a program
with ExecuTorch's Python runtime. That runtime takes torch tensors, so the session lives here, outside the
torch-free runtime, and is registered as the `executorch` backend when this module is imported (the command
line does so lazily, when a bundle asks for it)."""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from smop_edge.runtime.errors import UsageError
from smop_edge.runtime.manifest import TensorSpec
from smop_edge.runtime.sessions import GraphSession, register_backend

# upper bounds of dynamic dimensions where the ONNX path's are too large: ExecuTorch plans every tensor's memory
# at its bound (and planned the video encoder's input at 15 frames when asked for 15000)
# video: 30 s at 25 fps (the runtime cuts media into segments of at most 24 s); decoder: up to 4 beams and 1024
# positions (30 s of audio and video make a prefix of about 770), whose attention scores at the bound are
# [4, heads, 1024, 2048] floats; projector: 1024 tokens a modality
BOUNDS = {"video_frames": 750, "batch": 4, "length": 1024, "past_length": 1024, "audio_tokens": 1024,
          "video_tokens": 1024}

# whether the programs exported now get int8 weights (set per stage by `int8_weights`)
_INT8 = contextvars.ContextVar("executorch_int8", default=False)

# the input/output specs of the programs written in this process (`.pte` files carry no names), read once by
# the stage exporter that asked for the program (export.stages._io_spec)
WRITTEN: dict[Path, tuple[list[TensorSpec], list[TensorSpec]]] = {}


def _executorch():
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ModuleNotFoundError as exc:
        raise UsageError(f"--format executorch needs executorch 1.5 and numpy 2 ({exc}); scripts/setup.sh makes "
                         "that environment in build/envs/mobile") from None
    return to_edge_transform_and_lower, XnnpackPartitioner


@contextlib.contextmanager
def int8_weights(enabled: bool):
    """Within it, `export_executorch` quantizes linear and convolution layers with XNNPACK's quantizer: int8
    weights per channel, activations quantized to int8 per call (dynamic), as XNNPACK runs them."""
    token = _INT8.set(enabled)
    try:
        yield
    finally:
        _INT8.reset(token)


def _quantized(program, example: tuple, dynamic_shapes):
    """`program` with XNNPACK's dynamic int8 quantization (prepared, run once on the example, converted)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                        get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    module = prepare_pt2e(program.module(), quantizer)
    module(*example)
    return torch.export.export(convert_pt2e(module), example, dynamic_shapes=dynamic_shapes)


def _spec(name: str, value, symbols: dict[str, str]) -> TensorSpec:
    """A tensor's name, shape (a symbolic dimension by its expression in the inputs' dimension names, e.g.
    "length + past_length") and numpy dtype."""
    import torch

    def dim(d) -> int | str:
        if isinstance(d, int) or str(d).isdigit():
            return int(d)
        return re.sub(r"\bs\d+\b", lambda m: symbols.get(m.group(0), m.group(0)), str(d))

    return TensorSpec(name, [dim(d) for d in value.shape], str(torch.empty(0, dtype=value.dtype).numpy().dtype))


def export_executorch(module, example: tuple, path: Path, input_names: list[str], output_names: list[str],
                      dynamic: dict[str, dict[int, tuple[str, int, int]]] | None) -> Path:
    """`module` as an XNNPACK-lowered ExecuTorch program at `path` (`dynamic` as `export_module` takes it); its
    specs go into `WRITTEN[path]`."""
    import torch

    from .torch_export import dynamic_shapes as named_shapes

    lower, partitioner = _executorch()
    shapes = named_shapes(input_names, dynamic, BOUNDS)
    dynamic_shapes = tuple(shapes[n] for n in input_names) if shapes else None  # positional: forward's order
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        program = torch.export.export(module.eval(), example, dynamic_shapes=dynamic_shapes)
        if _INT8.get():
            program = _quantized(program, example, dynamic_shapes)
        buffer = lower(program, partitioner=[partitioner()]).to_executorch().buffer
    path.write_bytes(buffer)
    nodes = list(program.graph.nodes)
    user_inputs = [n for n in nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    outputs = nodes[-1].args[0]
    symbols = {str(n.meta["val"].shape[axis]): d for name, n in zip(input_names, user_inputs)
               for axis, (d, _, _) in (dynamic or {}).get(name, {}).items()}
    WRITTEN[path] = ([_spec(name, n.meta["val"], symbols) for name, n in zip(input_names, user_inputs)],
                     [_spec(name, n.meta["val"], symbols) for name, n in zip(output_names, outputs)])
    return path


class ExecuTorchSession(GraphSession):
    """A `.pte` program's `forward`, inputs in the manifest's order (a program has no names)."""

    def __init__(self, path: Path, input_names: list[str], output_names: list[str]) -> None:
        try:
            from executorch.runtime import Runtime
        except ModuleNotFoundError as exc:
            raise UsageError(f"ExecuTorch bundles run where executorch 1.5 is installed ({exc}): build/envs/mobile's "
                             "smop-edge (scripts/setup.sh makes it)") from None
        self.name, self.input_names, self.output_names = path.name, input_names, output_names
        self._method = Runtime.get().load_program(str(path)).load_method("forward")

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        def tensor(a: np.ndarray) -> "torch.Tensor":  # an empty array's numpy strides upset ExecuTorch: torch's own
            a = np.ascontiguousarray(a)
            return torch.from_numpy(a) if a.size else torch.empty(a.shape, dtype=torch.from_numpy(a).dtype)

        out = self._method.execute([tensor(feeds[n]) for n in self.input_names])
        return {name: t.numpy() for name, t in zip(self.output_names, out)}


def _open(path: Path, threads: int | None) -> GraphSession:
    """The session for a bundle's `.pte` file; its inputs' and outputs' names from the bundle's manifest."""
    from smop_edge.runtime.manifest import Manifest

    stages = Manifest.read(path.parent).stages.values()
    graph = next(g for s in stages for g in ([s.graph()] if s.file else s.buckets or []) if g.file == path.name)
    return ExecuTorchSession(path, [t.name for t in graph.inputs], [t.name for t in graph.outputs])


register_backend("executorch", _open)
