"""One small interface over ONNX Runtime and OpenVINO graph sessions.

`exact=True` (the default) keeps the engines from quantizing activations on their own: both would
otherwise quantize them to int8 on the fly next to int4/int8 weights (ONNX Runtime's DQ+MatMul ->
MatMulNBits fusion at accuracy level 4, OpenVINO's dynamic quantization), and this CPU would pick bf16 in
OpenVINO. What the export wrote stays: ONNX bundles' MatMulNBits weights carry accuracy level 4 (int8
activations in ONNX Runtime; export/weight_compression.py). Faster, inexact settings are an explicit,
measured choice.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import BundleError, UsageError

BACKENDS = ("onnxruntime", "openvino", "litert")
# backends whose Python runtime needs torch live outside this package and register here (ExecuTorch's:
# smop_edge.export.executorch); each opens a graph file with (path, threads)
_REGISTERED: dict[str, Callable[[Path, int | None], "GraphSession"]] = {}


def register_backend(name: str, open_graph: Callable[[Path, int | None], "GraphSession"]) -> None:
    """Make `name` a backend that `open_session` can use (from a package that may import torch)."""
    _REGISTERED[name] = open_graph
PRECISIONS = ("f32", "bf16", "f16")
# OpenVINO's CPU plugin keeps compiled kernels for up to this many input shapes (its default, 5000, let a
# live stream's resident memory creep by 77 MB in 10 minutes of utterances of every length; 0 kept it flat
# at 9 % more time per utterance, 32 at 1-3 %; docs/runtime.md)
OPENVINO_SHAPE_CACHE = 32


def openvino_cache_dir(config: dict[str, str]) -> Path | None:
    """Where OpenVINO keeps what it compiled with `config` ($SMOP_EDGE_CACHE or ~/.cache/smop-edge): a second
    start loads a compiled graph instead of compiling it again. OpenVINO keys a blob by the graph and the
    device but not by every setting (an f32 blob was loaded for a bf16 request and crashed it), so each
    compile configuration gets its own folder. None where it cannot be written."""
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(os.environ.get("SMOP_EDGE_CACHE") or Path.home() / ".cache" / "smop-edge") / "openvino" / digest
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return root if os.access(root, os.W_OK) else None


class GraphSession:
    """A loaded graph: `run(feeds) -> {output name: array}` plus its input/output names."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs; a graph that rejects the inputs its manifest describes is a bundle error."""
        try:
            return self._run(feeds)
        except MemoryError:
            raise
        except Exception as exc:  # the backends' own errors: shapes or names the manifest got wrong
            raise BundleError(f"graph {self.name} rejected its inputs ({_first_line(exc)}): the bundle's "
                              "manifest does not describe its graphs") from None

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _first_line(exc: Exception) -> str:
    """The error's first line that says something (OpenVINO's start with lines naming its own sources)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("Exception from src/")]
    return (said or lines or [type(exc).__name__])[0][:200]


def ort_options(threads: int | None, exact: bool):
    """ONNX Runtime's session options for the runtime's graphs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if exact:
        opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
        # weights behind DequantizeLinear (the int8 experts: per channel, which ONNX Runtime does not fuse
        # into MatMulNBits) are dequantized once at load instead of on every call (paper-scale projector
        # 276 -> 128 ms); only the projector has such nodes (the LLM and encoders use MatMulNBits)
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    opts.log_severity_level = 3
    return opts


class OrtSession(GraphSession):
    def __init__(self, path: Path, threads: int | None, exact: bool) -> None:
        import onnxruntime as ort

        self.name = path.name
        self._sess = ort.InferenceSession(str(path), ort_options(threads, exact), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self._sess.get_inputs()]
        self.output_names = [o.name for o in self._sess.get_outputs()]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._sess.run(self.output_names, feeds)))


class LiteRtSession(GraphSession):
    """A LiteRT (`.tflite`) graph's one signature, through ai-edge-litert's interpreter (XNNPACK on the CPU).
    Feeds are cast to the signature's types (LiteRT keeps integers in 32 bits)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ModuleNotFoundError:
            raise UsageError("LiteRT bundles need ai-edge-litert (pip install ai-edge-litert==2.3.0)") from None
        self.name = path.name
        self._runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner()
        inputs = self._runner.get_input_details()
        self._dtypes = {name: x["dtype"] for name, x in inputs.items()}
        self.input_names, self.output_names = list(inputs), list(self._runner.get_output_details())

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._runner(**{k: np.ascontiguousarray(v, dtype=self._dtypes[k]) for k, v in feeds.items()})
        return {name: out[name] for name in self.output_names}


class OpenVinoSession(GraphSession):
    def __init__(self, path: Path, device: str, threads: int | None, precision: str, exact: bool) -> None:
        import openvino as ov

        config: dict[str, str] = {"INFERENCE_PRECISION_HINT": precision}
        if exact:
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = str(threads)
        if device == "CPU":  # kernels kept per input shape: unbounded, a live stream's many lengths grow memory
            config["CPU_RUNTIME_CACHE_CAPACITY"] = str(OPENVINO_SHAPE_CACHE)
        self.name = path.name
        core = ov.Core()
        if device.split(".")[0].split(":")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise UsageError(f"OpenVINO device {device} is not available here "
                             f"(available: {', '.join(core.available_devices)})")
        if cache := openvino_cache_dir(config):  # keyed by the graph's content (a model object, not a path)
            core.set_property({"CACHE_DIR": str(cache)})
        self._model = core.compile_model(core.read_model(str(path)), device, config)
        try:  # what it chose (f32 for a bf16 request on a CPU without bf16 units); not every device says
            self.precision: str | None = self._model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except Exception:  # noqa: BLE001 - a device plugin without the property
            self.precision = None
        self.input_names = [i.get_any_name() for i in self._model.inputs]
        self.output_names = [o.get_any_name() for o in self._model.outputs]
        self._request = self._model.create_infer_request()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._request.infer(feeds)
        return {o.get_any_name(): np.array(result[o]) for o in self._model.outputs}


def open_session(path: str | Path, backend: str = "onnxruntime", device: str = "CPU", threads: int | None = None,
                 precision: str = "f32", exact: bool = True) -> GraphSession:
    """Load one graph (`.onnx`, ORT format `.ort`, OpenVINO `.xml`, LiteRT `.tflite`) on the chosen backend."""
    path = Path(path)
    if backend in _REGISTERED:
        return _REGISTERED[backend](path, threads)
    if backend == "executorch":
        raise UsageError("ExecuTorch bundles run where torch and executorch are installed (build/envs/mobile): "
                         "its smop-edge command loads them")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if backend == "onnxruntime":
        if path.suffix not in (".onnx", ".ort"):
            raise UsageError(f"ONNX Runtime cannot load {path.name}: export with --format onnx")
        if device != "CPU":
            raise UsageError("the onnxruntime backend runs on the CPU; use --backend openvino for other devices")
    elif path.suffix == ".ort":
        raise UsageError(f"OpenVINO cannot load {path.name} (ONNX Runtime's own format): use --backend onnxruntime")
    if (backend == "litert") != (path.suffix == ".tflite"):
        raise UsageError(f"{path.name}: LiteRT graphs (.tflite) run on --backend litert, and only they do")
    try:
        if backend == "onnxruntime":
            return OrtSession(path, threads, exact)
        if backend == "litert":
            return LiteRtSession(path, threads)
        return OpenVinoSession(path, device, threads, precision, exact)
    except UsageError:
        raise
    except Exception as exc:  # the backends' own errors: a graph that passed its checksum yet will not load
        raise BundleError(f"cannot load graph {path.name} on {backend}: {_first_line(exc)}") from None
