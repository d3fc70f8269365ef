"""Why a decode step costs what it does in OpenVINO: time one step of a bundle's decoder graph under each
compile setting (with per-node counters), or a stack of Llama-3.2-1B-shaped layers at one row in each weight
format (ONNX MatMulNBits in blocks of 32 / 128 at ONNX Runtime's accuracy level 4 or 0, NNCF's OpenVINO
formats), as GB/s of weights streamed (OpenVINO ignores the level).

    python scripts/decode_kernels.py step BUNDLE [--past 200] [--rows 1] [--settings exact,dq,bf16] [--nodes]
    python scripts/decode_kernels.py stack [--layers 4]

Settings: exact (f32, no dynamic quantization: the runtime's default), dq (f32 with OpenVINO's int8
activations: `--int8-activations`), bf16 (`--precision bf16`), bf16dq. Numbers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SETTINGS = {"exact": {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"},
            "dq": {"INFERENCE_PRECISION_HINT": "f32"},
            "bf16": {"INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"},
            "bf16dq": {"INFERENCE_PRECISION_HINT": "bf16"}}
HIDDEN, FFN, KV = 2048, 8192, 512  # Llama-3.2-1B


def median_ms(run, repeats: int = 10) -> float:
    """Median wall time of `run()` after 3 warm-up calls."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def compile_model(model, setting: str, threads: int, nodes: bool = False):
    import openvino as ov

    config = dict(SETTINGS[setting], INFERENCE_NUM_THREADS=str(threads), **({"PERF_COUNT": "YES"} if nodes else {}))
    return ov.Core().compile_model(model, "CPU", config)


def step(args: argparse.Namespace) -> None:
    """One call of the bundle's decoder: `rows` new positions after `past` cached ones, random inputs."""
    import openvino as ov

    model = ov.Core().read_model(str(Path(args.bundle) / "decoder.onnx"))
    rng = np.random.default_rng(0)
    feeds = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        size = lambda i, default: shape[i].get_length() if shape[i].is_static else default  # noqa: E731
        if port.get_any_name().startswith("past"):
            dims = (size(0, 1), 1, size(2, 1), args.past, size(4, 1))
            feeds[port.get_any_name()] = (rng.standard_normal(dims) * 0.1).astype(np.float32)
        else:
            feeds[port.get_any_name()] = (rng.standard_normal((1, args.rows, size(2, 1))) * 0.02).astype(np.float32)
    for setting in args.settings.split(","):
        request = compile_model(model, setting, args.threads, args.nodes).create_infer_request()
        print(f"{setting:8s} {median_ms(lambda: request.infer(feeds)):8.2f} ms per call ({args.rows} rows, past {args.past})")
        if args.nodes:
            kernels: dict[tuple[str, str], float] = collections.defaultdict(float)
            for node in request.profiling_info:
                kernels[(node.node_type, node.exec_type)] += node.real_time.total_seconds() * 1e3
            for (kind, kernel), ms in sorted(kernels.items(), key=lambda kv: -kv[1])[:6]:
                print(f"    {kind:28s} {kernel:28s} {ms:7.2f} ms")


def layer_stack(path: Path, layers: int) -> int:
    """An ONNX graph of `layers` Llama-1B-shaped layers' matmuls at fp32 (q, k, v, o, gate, up, down; their
    outputs summed so that none is dead), random weights; returns the weight count."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, x, count = [], [], "x", 0
    shapes = [(HIDDEN, HIDDEN), (HIDDEN, KV), (HIDDEN, KV), (HIDDEN, HIDDEN), (HIDDEN, FFN), (HIDDEN, FFN), (FFN, HIDDEN)]
    for i in range(layers):
        for j, shape in enumerate(shapes):
            weights.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.02).astype(np.float32), f"w{i}{j}"))
            count += shape[0] * shape[1]
        nodes += [helper.make_node("MatMul", [x, f"w{i}{j}"], [f"m{i}{j}"]) for j in range(6)]
        nodes += [helper.make_node("Mul", [f"m{i}4", f"m{i}5"], [f"g{i}"]),
                  helper.make_node("MatMul", [f"g{i}", f"w{i}6"], [f"d{i}"]),
                  helper.make_node("ReduceSum", [f"m{i}1"], [f"k{i}"], keepdims=1),
                  helper.make_node("ReduceSum", [f"m{i}2"], [f"v{i}"], keepdims=1),
                  helper.make_node("Sum", [f"m{i}0", f"m{i}3", f"d{i}", f"k{i}", f"v{i}"], [f"h{i}"])]
        x = f"h{i}"
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, HIDDEN])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return count


def stack(args: argparse.Namespace) -> None:
    """Each weight format of the layer stack at one row, in OpenVINO (exact and dq) and ONNX Runtime."""
    import contextlib
    import logging
    import sys

    import nncf
    import onnxruntime as ort
    import openvino as ov

    from smop_edge.export import weight_compression

    work = Path(tempfile.mkdtemp(prefix="decode-kernels-"))
    try:
        count = layer_stack(work / "fp32.onnx", args.layers)
        x = {"x": np.random.default_rng(1).standard_normal((1, 1, HIDDEN)).astype(np.float32)}
        models = {"fp32": (ov.convert_model(str(work / "fp32.onnx")), 32, work / "fp32.onnx")}
        for bits, block, level in ((8, 32, 4), (8, 128, 4), (4, 32, 4), (4, 128, 4), (4, 128, 0)):
            path = work / f"nbits{bits}-{block}-{level}.onnx"
            shutil.copy(work / "fp32.onnx", path)
            weight_compression.compress_onnx(path, bits, block, level)
            models[f"MatMulNBits {bits}-bit, block {block}, level {level}"] = (ov.convert_model(str(path)),
                                                                             bits + 32 / block, path)
        logging.getLogger("nncf").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(sys.stderr):
            for mode, group in (("INT8_SYM", None), ("INT4_SYM", 128)):
                kw = {"group_size": group, "ratio": 1.0, "all_layers": True} if group else {}
                compressed = nncf.compress_weights(ov.convert_model(str(work / "fp32.onnx")),
                                                   mode=getattr(nncf.CompressWeightsMode, mode), **kw)
                models[f"NNCF {mode}{f', group {group}' if group else ''}"] = (compressed, 8 if group is None else 4.25, None)
        for name, (model, bits, onnx_path) in models.items():
            gb = count * bits / 8 / 1e9
            line = [f"{name:40s}"]
            for setting in ("exact", "dq"):
                request = compile_model(model, setting, args.threads).create_infer_request()
                ms = median_ms(lambda: request.infer(x), 30)
                line.append(f"OpenVINO {setting} {ms:6.2f} ms ({gb / ms * 1e3:4.1f} GB/s)")
            if onnx_path is not None:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.log_severity_level = args.threads, 3
                session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
                ms = median_ms(lambda: session.run(None, x), 30)
                line.append(f"ONNX Runtime {ms:6.2f} ms")
            print("  ".join(line), flush=True)
    finally:
        shutil.rmtree(work)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("step", help="one call of a bundle's decoder graph under each setting")
    s.add_argument("bundle")
    s.add_argument("--past", type=int, default=200)
    s.add_argument("--rows", type=int, default=1, help="new positions per call (1: a decode step; more: a prefill)")
    s.add_argument("--settings", default="exact,dq,bf16")
    s.add_argument("--nodes", action="store_true", help="time per node type and kernel (OpenVINO's PERF_COUNT)")
    k = sub.add_parser("stack", help="Llama-1B-shaped layers at one row in each weight format")
    k.add_argument("--layers", type=int, default=4)
    args = p.parse_args()
    (step if args.what == "step" else stack)(args)


if __name__ == "__main__":
    main()
