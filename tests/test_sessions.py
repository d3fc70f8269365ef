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
