"""The hand-written static top-k projector graph against the torch modules, every layout, every
weight mode, on ONNX Runtime and OpenVINO (f32)."""

import numpy as np
import onnx
import pytest
import torch

from smop_edge.export.projector_graph import build_projector
from smop_edge.export.quantize import quantize_weight
from smop_edge.models import zoo
from smop_edge.models.checkpoint import random_init
from smop_edge.models.compression import compress
from smop_edge.runtime.sessions import open_session

TOL = {"fp32": 1e-5, "int8": 0.1, "int4": 1.0}
STANDARD_OPS = {"MatMul", "Add", "Relu", "LayerNormalization", "Softmax", "TopK", "Div", "ReduceSum", "Shape",
                "ConstantOfShape", "ScatterElements", "Slice", "Mul", "Sum", "DequantizeLinear"}


@pytest.mark.parametrize("name", ["tiny-jejr", "tiny-jedr", "tiny-dedr", "tiny-mlp", "tiny-stack", "tiny-asr",
                                  "tiny-vsr"])
@pytest.mark.parametrize("mode", ["fp32", "int8", "int4"])
def test_projector_graph_matches_torch(tmp_path, name, mode):
    model = random_init(zoo.get(name), 1)
    cfg = model.cfg
    a = torch.randn(1, 40, 64) if cfg.has_audio else None
    v = torch.randn(1, 20, 64) if cfg.has_video else None
    with torch.no_grad():
        ta, tv, routings = model.project(a, v)
    graph = build_projector(model, mode)
    assert {n.op_type for n in graph.graph.node} <= STANDARD_OPS
    path = tmp_path / "projector.onnx"
    onnx.save(graph, str(path))
    feeds = {}
    if a is not None:
        feeds["audio_tokens"] = compress(a, cfg.audio_compression)[0].numpy()
    if v is not None:
        feeds["video_tokens"] = compress(v, cfg.video_compression)[0].numpy()
    for backend in ("onnxruntime", "openvino"):
        out = open_session(path, backend).run(feeds)
        for m, want in (("audio", ta), ("video", tv)):
            if want is not None:
                assert np.abs(out[f"{m}_embeds"] - want[0].numpy()).max() < TOL[mode], (backend, m)
        if cfg.projector.kind == "smop" and mode == "fp32":
            probs = np.concatenate([out[f"{m}_router_probs"] for m in ("audio", "video")])
            want_probs = torch.cat([torch.softmax(r.logits, -1) for r in routings]).numpy()
            if cfg.projector.layout == "JEJR":  # torch routes the concatenation in one go
                np.testing.assert_allclose(probs, want_probs, atol=1e-6)


def test_static_token_counts_fix_the_input_shapes():
    graph = build_projector(random_init(zoo.get("tiny-jejr"), 0), "int8", static_tokens={"audio": 12, "video": 13})
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert dims == {"audio_tokens": [12, 64], "video_tokens": [13, 64]}


def test_weight_quantization_round_trip():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    w[:, 5] = 0.0
    q8 = quantize_weight(w, 8)
    assert q8.values.dtype == np.int8 and q8.scale.shape == (48,) and np.abs(q8.values).max() <= 127
    assert np.abs(q8.dequantize() - w).max() <= q8.scale.max() / 2 + 1e-6
    q4 = quantize_weight(w, 4, group_size=32)
    assert q4.group == 32 and q4.scale.shape == (2, 48) and np.abs(q4.values).max() <= 7
    assert np.abs(q4.dequantize() - w).max() <= q4.scale.max() / 2 + 1e-6
    assert np.all(q8.dequantize()[:, 5] == 0)
    assert quantize_weight(rng.standard_normal((48, 8)), 4).group == 16  # 32 does not divide 48
