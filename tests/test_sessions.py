"""OpenVINO's compile cache: a blob compiled under one setting is never loaded under another (OpenVINO
keys blobs by graph and device, not by precision: an f32 blob loaded for a bf16 request crashed the
process)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from smop_edge.runtime import DEMO_BUNDLE
from smop_edge.runtime.sessions import openvino_cache_dir

ov = pytest.importorskip("openvino")

RUN = """
import sys, numpy as np
from smop_edge.runtime.sessions import open_session
s = open_session(sys.argv[1], "openvino", threads=1, precision=sys.argv[2])
np.save(sys.argv[3], s.run({"mel": np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32)})["audio_features"])
"""


def test_each_compile_setting_has_its_own_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOP_EDGE_CACHE", str(tmp_path))
    f32, bf16 = openvino_cache_dir({"INFERENCE_PRECISION_HINT": "f32"}), openvino_cache_dir({"INFERENCE_PRECISION_HINT": "bf16"})
    assert f32 != bf16 and f32.parent == bf16.parent == tmp_path / "openvino"
    assert openvino_cache_dir({"INFERENCE_PRECISION_HINT": "f32"}) == f32


def test_a_cached_f32_graph_does_not_serve_a_bf16_session(tmp_path):
    """Two processes on one cache, f32 then bf16, each as a fresh process would: the bf16 one runs (it
    crashed before) and gives what bf16 gives without a cache."""
    graph = DEMO_BUNDLE / "audio_encoder.onnx"
    out = {}
    for name, precision, cache in (("f32", "f32", "shared"), ("bf16", "bf16", "shared"), ("alone", "bf16", "alone")):
        env = {**os.environ, "SMOP_EDGE_CACHE": str(tmp_path / cache)}
        done = subprocess.run([sys.executable, "-c", RUN, str(graph), precision, str(tmp_path / f"{name}.npy")],
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}"
        out[name] = np.load(tmp_path / f"{name}.npy")
    np.testing.assert_array_equal(out["bf16"], out["alone"])
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert not np.array_equal(out["bf16"], out["f32"])  # bf16 really ran in bf16


def test_onnx_runtime_dequantizes_int8_experts_once_at_load(tmp_path):
    """The projector's int8 experts sit behind DequantizeLinear nodes; exact sessions fold them into f32
    weights when the graph loads (ONNX Runtime would otherwise dequantize every expert on every call)."""
    import onnx
    import onnxruntime as ort

    from smop_edge.runtime.sessions import OrtSession, ort_options

    graph = DEMO_BUNDLE / "projector.onnx"
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(graph)).graph.node)
    folded = tmp_path / "folded.onnx"
    opts = ort_options(threads=1, exact=True)  # the runtime's own options, its optimised graph written out
    opts.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
    assert not any(n.op_type == "DequantizeLinear" for n in onnx.load(str(folded)).graph.node)
    session = OrtSession(graph, threads=1, exact=True)
    literal = ort.SessionOptions()  # the oracle: every node as written, DequantizeLinear then MatMul
    literal.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(graph), literal, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 7 for d in i.shape]).astype(np.float32)
             for i in plain.get_inputs()}
    want = dict(zip([o.name for o in plain.get_outputs()], plain.run(None, feeds)))
    for name, got in session.run(feeds).items():
        np.testing.assert_allclose(got, want[name], rtol=1e-5, atol=1e-5)


def test_openvino_decode_steps_stay_in_f32_under_a_reduced_precision(tmp_path, monkeypatch):
    """`precision="bf16"` compiles the decoder twice: bf16 for the prefill, f32 for one-token steps (OpenVINO's
    bf16 kernels are slower for one row against compressed weights); at f32 both are one session."""
    from smop_edge.runtime.bundle import load_bundle
    from smop_edge.runtime.recognizer import Recognizer

    monkeypatch.setenv("SMOP_EDGE_CACHE", str(tmp_path))
    prefix = np.zeros((1, 3, load_bundle(DEMO_BUNDLE).config.llm.hidden), np.float32)
    steppers = {}
    for precision in ("f32", "bf16"):
        rec = Recognizer.from_bundle(DEMO_BUNDLE, backend="openvino", threads=1, precision=precision)
        stepper = steppers[precision] = rec.stepper(prefix)
        assert stepper.prefill().ndim == 1 and stepper.step(np.array([5])).shape[0] == 1
        assert stepper.step_session.precision == "f32"  # what OpenVINO compiled, as the session reads it
        assert (stepper.step_session is stepper.session) == (precision == "f32")
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert steppers["bf16"].session.precision == "bf16"


def test_int8_activations_flag_reaches_the_engine_and_the_batch_stamp(tmp_path, monkeypatch):
    """`--int8-activations` lets OpenVINO quantize activations (dynamic quantization on), the default keeps it
    off; a batch run with it stamps its outputs so, one without it keeps the stamps made before the flag."""
    import argparse

    from smop_edge.apps.batch import Recognition
    from smop_edge.apps.commands.common import add_backend_flags, open_bundle

    monkeypatch.setenv("SMOP_EDGE_CACHE", str(tmp_path))
    parser = argparse.ArgumentParser()
    add_backend_flags(parser, ["onnxruntime", "openvino"])
    group = {}
    for flags in ([], ["--int8-activations"]):
        rec = open_bundle(parser.parse_args(["--backend", "openvino", "--threads", "1", *flags]))
        group[bool(flags)] = int(rec.session("decoder")._model.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE"))
    assert group[False] == 0 and group[True] > 0
    assert Recognition(None, "d").settings() == {k: v for k, v in Recognition(None, "d", exact=False).settings().items()
                                                 if k != "int8_activations"}
    assert Recognition(None, "d", exact=False).settings()["int8_activations"] is True


def test_decode_steps_run_on_the_step_session_and_the_prefill_on_its_own():
    """`GraphStepper`: the prefill calls the prefill's session, every step the step session, with the cache
    the previous call returned."""
    from smop_edge.runtime.recognizer import GraphStepper

    class Recording:
        def __init__(self):
            self.pasts = []

        def run(self, feeds):
            self.pasts.append(feeds["past_keys"].shape[3])
            n = feeds["past_keys"].shape[3] + feeds["inputs_embeds"].shape[1]
            kv = np.zeros((1, 1, 1, n, 2), np.float32)
            return {"logits": np.zeros((1, 5), np.float32), "present_keys": kv, "present_values": kv}

    prefill, steps = Recording(), Recording()
    stepper = GraphStepper(prefill, np.zeros((5, 3), np.float32), np.zeros((1, 4, 3), np.float32), 1, 1, 2,
                           step_session=steps)
    stepper.prefill()
    stepper.step(np.array([1]))
    stepper.step(np.array([2]))
    assert prefill.pasts == [0] and steps.pasts == [4, 5]


def test_onnx_runtime_refuses_another_device():
    from smop_edge.runtime.errors import UsageError
    from smop_edge.runtime.sessions import open_session

    with pytest.raises(UsageError, match="runs on the CPU"):
        open_session(DEMO_BUNDLE / "projector.onnx", "onnxruntime", device="GPU")
