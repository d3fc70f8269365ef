"""What this machine can do at best, measured in the benchmark's own run: memory bandwidth (a large
copy) and peak matmul throughput in fp32 and int8 (ONNX Runtime, the engine the graphs run on)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class MachineLimits:
    bandwidth_gbps: float  # bytes read + written per second by large copies in `threads` streams, GB/s
    peak_gflops_fp32: float | None  # MatMul, fp32 (None: the onnx package, which builds the graph, is missing)
    peak_gops_int8: float | None  # MatMulInteger, uint8 x int8 -> int32
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def _best_seconds(run, repeats: int) -> float:
    run()  # warm-up: page faults, thread pool start
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def memory_bandwidth(megabytes: int = 512, repeats: int = 5, streams: int = 1) -> float:
    """GB/s of large copies (one read and one write per byte) in `streams` threads at once, each on its own
    part of the buffers, best of `repeats`. Far larger than any cache, so it is the DRAM bandwidth that
    `streams` cores get together; a decode on N threads is bound by N streams, not one (numpy's copy
    releases the GIL)."""
    src = np.ones(megabytes * (1 << 20) // 8, np.float64)
    dst = np.empty_like(src)
    parts = list(zip(np.array_split(dst, streams), np.array_split(src, streams)))
    with ThreadPoolExecutor(streams) as pool:
        seconds = _best_seconds(lambda: list(pool.map(lambda p: np.copyto(*p), parts)), repeats)
    return 2 * src.nbytes / seconds / 1e9


def _matmul_session(n: int, int8: bool, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if int8:
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                  helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])]
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
    else:
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"]
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
    model = helper.make_model(helper.make_graph([node], "matmul", inputs, [out]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def matmul_operands(n: int, int8: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random n x n operands: fp32, or uint8 x 7-bit int8. ONNX Runtime's uint8 x int8 kernel for AVX2
    without VNNI adds products pairwise in int16, which saturates for full-range weights (seen on an AMD
    EPYC: 68 % of the outputs wrong); with weights in [-64, 63] every x86 kernel is exact."""
    if int8:
        return rng.integers(0, 256, (n, n), dtype=np.uint8), rng.integers(-64, 64, (n, n), dtype=np.int8)
    return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)


def peak_matmul(n: int = 1024, int8: bool = False, threads: int = 2, repeats: int = 5) -> float:
    """GFLOP/s (fp32) or GOP/s (int8) of an n x n x n ONNX Runtime matmul, best of `repeats`."""
    sess = _matmul_session(n, int8, threads)
    a, b = matmul_operands(n, int8, np.random.default_rng(0))
    feeds = {"a": a, "b": b}
    seconds = _best_seconds(lambda: sess.run(None, feeds), repeats)
    return 2 * n ** 3 / seconds / 1e9


def measure(threads: int) -> MachineLimits:
    """The limits; the matmul peaks only where onnx is installed (not in a lean runtime install, e.g. a Pi's)."""
    try:
        import onnx  # noqa: F401
    except ModuleNotFoundError:
        fp32 = int8 = None
    else:
        fp32 = round(peak_matmul(int8=False, threads=threads), 1)
        int8 = round(peak_matmul(int8=True, threads=threads), 1)
    return MachineLimits(bandwidth_gbps=round(memory_bandwidth(streams=threads), 2), peak_gflops_fp32=fp32,
                         peak_gops_int8=int8, threads=threads)
