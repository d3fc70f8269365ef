"""Bundles from tiny official-layout checkpoints: ONNX and OpenVINO, each quantization setting once,
every projector layout at least once (see also test_projector_graph.py)."""

import json
import re
import shutil

import numpy as np
import onnx
import pytest

from conftest import edit_manifest

from smop_edge.apps.cli import main
from smop_edge.export.bundle import ExportOptions, export_bundle
from smop_edge.models.checkpoint import load_model
from smop_edge.runtime.bundle import load_bundle
from smop_edge.runtime.errors import BundleError, UsageError
from smop_edge.runtime.tokenizer import load_tokenizer

# Tiny random models can have near-tied logits: tokens must be equal where every reference step's
# top-2 logit margin exceeds this; elsewhere only the logits are compared within tolerance.
TOKEN_MARGIN = 1e-3


def _export(tmp_path_factory, make_checkpoint, base_tokenizer, name, **options):
    path, _ = make_checkpoint(name)
    model, _ = load_model(path)
    tok = load_tokenizer(base_tokenizer, expected_size=model.cfg.llm.vocab)
    out = tmp_path_factory.mktemp("bundle") / name
    export_bundle(model, tok, out, ExportOptions(**options), {"checkpoint": path.name}, log=lambda _msg: None)
    return out, json.loads((out / "manifest.json").read_text())


def _assert_end_to_end(manifest, exact: bool):
    e2e = manifest["parity"]["end_to_end"]
    if e2e["reference_min_top2_margin"] > TOKEN_MARGIN and exact:
        assert e2e["tokens_equal"], e2e
    assert manifest["parity"]["decoder"]["max_abs_error"] < (1e-4 if exact else 0.1)


@pytest.fixture(scope="module")
def onnx_fp32(tmp_path_factory, make_checkpoint, base_tokenizer):
    return _export(tmp_path_factory, make_checkpoint, base_tokenizer, "tiny-jejr", experts="fp32", llm="fp32")


def test_onnx_fp32_bundle_matches_the_reference(onnx_fp32):
    out, manifest = onnx_fp32
    p = manifest["parity"]
    assert p["backend"] == "onnxruntime"
    for stage in ("audio_encoder", "video_encoder", "projector", "decoder"):
        assert p[stage]["max_abs_error"] < 1e-4, stage
    assert p["projector"]["routing_identical"]
    assert p["projector"]["audio_routing"]["tokens"] > 256
    _assert_end_to_end(manifest, exact=True)
    assert set(manifest["files"]) == {f.name for f in out.iterdir()} - {"manifest.json", "manifest.json.sha256"}
    assert manifest["parity"]["passed"] and manifest["parity"]["failures"] == []
    assert manifest["self_test"]["bundle_tokens"] == manifest["parity"]["end_to_end"]["bundle_tokens"]
    assert manifest["stages"]["audio_encoder"]["inputs"][0] == {"name": "mel", "shape": [1, 80, 3000],
                                                                 "dtype": "float32"}
    dec = {i["name"]: i["shape"] for i in manifest["stages"]["decoder"]["inputs"]}
    assert dec["past_keys"][3] == "past_length" and dec["inputs_embeds"][1] == "length"
    assert manifest["tokenizer"]["special_ids"]["audio_start"] == manifest["model"]["llm"]["vocab"] - 4


def test_verify_passes_then_catches_tampering(onnx_fp32, tmp_path, capsys):
    src, _ = onnx_fp32
    bundle = tmp_path / "b"
    shutil.copytree(src, bundle)
    assert main(["verify", str(bundle)]) == 0
    assert "self-test (onnxruntime, avsr): pass" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--backend", "openvino"]) == 0  # OpenVINO reads ONNX graphs too
    capsys.readouterr()
    edit_manifest(bundle, lambda m: m["self_test"].update(bundle_tokens=[1, 2, 3]), reseal=False)
    assert main(["verify", str(bundle)]) == 4
    assert "manifest.json was modified since export" in capsys.readouterr().err
    edit_manifest(bundle, lambda m: None)  # resealed: the self-test itself now fails
    assert main(["verify", str(bundle)]) == 4
    assert "self-test transcript differs from the one recorded at export" in capsys.readouterr().err
    with open(bundle / "decoder.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    assert main(["verify", str(bundle)]) == 4
    assert "sha256 mismatch): decoder.onnx" in capsys.readouterr().err
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json"):
        load_bundle(bundle)


def test_openvino_bundle_fp32_matches_the_reference(tmp_path_factory, make_checkpoint, base_tokenizer):
    out, manifest = _export(tmp_path_factory, make_checkpoint, base_tokenizer, "tiny-dedr", format="openvino",
                            experts="fp32", llm="fp32", audio_mode="fast")
    assert manifest["parity"]["backend"] == "openvino" and manifest["audio_mode"] == "fast"
    assert all(manifest["parity"][s]["max_abs_error"] < 1e-4 for s in ("audio_encoder", "video_encoder",
                                                                       "projector", "decoder"))
    _assert_end_to_end(manifest, exact=True)
    assert sorted(p.suffix for p in out.glob("projector.*")) == [".bin", ".xml"]
    mel = next(i for i in manifest["stages"]["audio_encoder"]["inputs"])
    assert mel["shape"][2] == "mel_frames"  # fast mode: variable length
    assert main(["verify", str(out)]) == 0


def test_int8_experts_are_int8_on_disk_with_parity_in_the_manifest(tmp_path_factory, make_checkpoint,
                                                                    base_tokenizer):
    out, manifest = _export(tmp_path_factory, make_checkpoint, base_tokenizer, "tiny-jedr")  # defaults: int8/int8
    assert manifest["quantization"] == {"experts": "int8", "router": "fp32", "layer_norm": "fp32", "llm": "int8",
                                        "encoders": "fp32", "activations": {"llm": "int8", "encoders": "fp32"}}
    graph = onnx.load(str(out / "projector.onnx"))
    inits = {t.name: t for t in graph.graph.initializer}
    expert_q = [n for n in inits if ".experts." in n and n.endswith("weight_q")]
    assert len(expert_q) == 4 * 2  # 4 experts x 2 linears, shared by both routers
    assert all(inits[n].data_type == onnx.TensorProto.INT8 for n in expert_q)
    assert not any(re.search(r"\.experts\.\d+\.[02]\.weight$", n) for n in inits)  # no float copies
    assert inits["audiovisual_proj.experts.0.3.weight"].data_type == onnx.TensorProto.FLOAT  # LayerNorm
    assert inits["audiovisual_proj.audio_gate.weight"].data_type == onnx.TensorProto.FLOAT
    decoder = onnx.load(str(out / "decoder.onnx")).graph
    float_weights = {t.name for t in decoder.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2}
    nbits = [n for n in decoder.node if n.op_type == "MatMulNBits"]
    # 8-bit weights compute in int8 (accuracy level 4): ONNX Runtime's fp32 path for them is slow
    assert nbits and all(onnx.helper.get_attribute_value(a) == 4 for n in nbits for a in n.attribute
                         if a.name == "accuracy_level")
    assert not [n.name for n in decoder.node if n.op_type in ("MatMul", "Gemm") and set(n.input) & float_weights]
    p = manifest["parity"]
    assert p["projector"]["routing_identical"] and p["projector"]["max_abs_error"] < 0.1
    assert 0.0 <= p["end_to_end"]["token_agreement"] <= 1.0
    _assert_end_to_end(manifest, exact=False)


def _constant_types(xml) -> set[str]:
    import openvino as ov

    return {op.get_element_type().get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()
            if op.get_type_name() == "Constant"}


def test_openvino_int4_stores_4_bit_weights(tmp_path_factory, make_checkpoint, base_tokenizer):
    out, manifest = _export(tmp_path_factory, make_checkpoint, base_tokenizer, "tiny-mlp", format="openvino",
                            experts="int4", llm="int4", encoders="int8")
    assert {"i4", "u4"} & _constant_types(out / "projector.xml")
    assert {"i4", "u4"} & _constant_types(out / "decoder.xml")
    assert {"i8", "u8"} & _constant_types(out / "audio_encoder.xml")
    assert manifest["parity"]["projector"]["max_abs_error"] < 1.0
    assert manifest["parity"]["audio_encoder"]["max_abs_error"] < 0.5


def test_bad_export_requests(tmp_path, make_checkpoint, base_tokenizer, capsys, monkeypatch):
    path, _ = make_checkpoint("tiny-asr")
    base = ["export", str(path), "--tokenizer", str(base_tokenizer)]
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep me")
    assert main(base + ["--out", str(full)]) == 2
    assert "not empty" in capsys.readouterr().err and (full / "x").exists()
    assert main(base + ["--out", str(tmp_path / "s"), "--static", "--video-buckets", "750,250"]) == 2
    assert "increasing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(base + ["--out", str(tmp_path / "f"), "--format", "tflite"])
    assert exc.value.code == 2
    capsys.readouterr()
    import shutil as sh
    from collections import namedtuple

    monkeypatch.setattr(sh, "disk_usage", lambda _p: namedtuple("u", "total used free")(10, 10, 1000))
    assert main(base + ["--out", str(tmp_path / "d")]) == 2
    assert "not enough disk" in capsys.readouterr().err
    with pytest.raises(UsageError, match="unsupported experts"):
        ExportOptions(experts="int2").validate()


def test_verify_runs_without_torch(onnx_fp32):
    import subprocess
    import sys

    code = ("import sys\nfrom smop_edge.apps.cli import main\nrc = main(['verify', sys.argv[1]])\n"
            "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules), 'torch imported'\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(onnx_fp32[0])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "pass" in proc.stdout


def _walk_static(path) -> None:
    """Every tensor of the graph has a static shape and no op has a data-dependent output shape."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    assert not model.is_dynamic(), path.name
    for op in model.get_ops():
        assert op.get_type_name() not in {"NonZero", "Unique", "Loop", "If", "NonMaxSuppression"}, op
        for output in op.outputs():
            assert output.get_partial_shape().is_static, (path.name, op.get_type_name(), output.get_partial_shape())


def test_static_bundle_has_static_graphs_and_matches_the_reference(tmp_path_factory, make_checkpoint,
                                                                   base_tokenizer):
    out, manifest = _export(tmp_path_factory, make_checkpoint, base_tokenizer, "tiny-jejr", static=True,
                            audio_mode="fast", experts="fp32", llm="fp32", audio_buckets=(100, 200),
                            video_buckets=(30, 60), kv_capacity=128, decoder_chunk=4, projector_chunk=16)
    graphs = sorted(out.glob("*.onnx"))
    assert [g.name for g in graphs] == ["audio_encoder.100.onnx", "audio_encoder.200.onnx", "decoder.onnx",
                                        "projector.onnx", "video_encoder.30.onnx", "video_encoder.60.onnx"]
    for graph in graphs:
        _walk_static(graph)
    # buckets share one weights file per encoder
    assert sorted(p.name for p in out.glob("*.data")) == ["audio_encoder.100.onnx.data", "video_encoder.30.onnx.data"]
    p = manifest["parity"]
    for stage in ("audio_encoder", "video_encoder", "projector", "decoder"):
        assert p[stage]["max_abs_error"] < 1e-4, stage
    _assert_end_to_end(manifest, exact=True)
    assert manifest["static"]["kv_capacity"] == 128
    assert main(["verify", str(out)]) == 0


@pytest.mark.parametrize("slopes", ["positive", "mixed"])
def test_video_stem_exported_in_2d_computes_the_3d_stem(slopes, onnx_fp32):
    """The Conv3d stem's per-frame 2-D form (5 taps as channels; PReLU after the pool when it is
    monotonic) gives the 3-D stem's output, and the exported graph has no Conv3d."""
    import torch

    from smop_edge.export.encoder_graphs import StemAs2d
    from smop_edge.models import zoo
    from smop_edge.models.checkpoint import random_init

    model = random_init(zoo.get("tiny-dedr"), seed=1).eval()
    stem = model.video_encoder.feature_extractor_video.resnet.frontend3D
    with torch.no_grad():
        stem[1].running_mean.normal_(), stem[1].running_var.uniform_(0.5, 2.0)
        stem[2].weight.uniform_(0.05, 0.5) if slopes == "positive" else stem[2].weight.uniform_(-0.5, 0.5)
        x = torch.randn(1, 1, 11, 88, 88)
        two_d = StemAs2d(stem)
        assert two_d.prelu_after_pool == (slopes == "positive")
        torch.testing.assert_close(two_d(x), stem(x), rtol=1e-4, atol=1e-5)
    graph = onnx.load(str(onnx_fp32[0] / "video_encoder.onnx"))
    kernels = [list(a.ints) for n in graph.graph.node if n.op_type == "Conv" for a in n.attribute
               if a.name == "kernel_shape"]
    assert [7, 7] in kernels and not any(len(k) == 3 for k in kernels)  # the positional Conv1d stays 1-D


def test_parity_thresholds_by_quantization():
    from smop_edge.export.parity import judge

    def figures(agreement, margin=1.0, error=1e-6, routing=True):
        graph = {"max_abs_error": error, "reference_max_abs": 2.0}
        return {"audio_encoder": graph, "video_encoder": graph, "decoder": graph,
                "projector": {**graph, "routing_identical": routing},
                "end_to_end": {"token_agreement": agreement, "reference_min_top2_margin": margin}}

    assert judge(figures(1.0), "fp32", "fp32", "fp32") == []
    assert judge(figures(0.9), "fp32", "fp32", "fp32")  # fp32 must reproduce torch's tokens
    assert judge(figures(0.9, margin=1e-4), "fp32", "fp32", "fp32") == []  # ... unless torch had a near-tie
    assert judge(figures(0.9), "int8", "int8", "fp32") == []
    assert judge(figures(0.6), "int8", "int4", "fp32") == [] and judge(figures(0.6), "int8", "int8", "fp32")
    assert judge(figures(1.0, error=0.01), "int8", "fp32", "int8") == [
        "decoder: max abs error 0.01 > 0.002 (fp32 weights)"]  # 1e-3 of the reference's magnitude, 2
    assert judge(figures(1.0, error=0.01), "int8", "int8", "fp32") == [  # quantized graphs are judged end to end
        "audio_encoder: max abs error 0.01 > 0.002 (fp32 weights)",
        "video_encoder: max abs error 0.01 > 0.002 (fp32 weights)"]
    assert "routing" in judge(figures(1.0, routing=False), "int8", "int8", "fp32")[0]
    assert judge(figures(1.0, routing=False), "int8", "int8", "int8") == []  # int8 encoders move the router input
    # a single-token output that int8 flips to the reference's runner-up at a near-tie within the decoder's
    # logit error (2 x 0.06 >= 0.095) passes; an arbitrary token, a wider margin or fp32 weights do not
    flip = {"step": 0, "reference_margin": 0.095, "bundle_took_runner_up": True}

    def flipped(error=0.06, **change):
        f = figures(0.0, error=error)
        f["end_to_end"]["first_difference"] = {**flip, **change}
        return f

    assert judge(flipped(), "int8", "int8", "int8") == []
    assert judge(flipped(bundle_took_runner_up=False), "int8", "int8", "int8")
    assert judge(flipped(error=0.04), "int8", "int8", "int8")
    assert judge(flipped(error=1e-6), "fp32", "fp32", "fp32")


def test_export_that_breaks_parity_exits_6_unless_kept(tmp_path, make_checkpoint, base_tokenizer, monkeypatch,
                                                       capsys):
    from smop_edge.export import parity

    monkeypatch.setattr(parity, "FP32_RELATIVE_ERROR", -1.0)  # any error breaks it: every fp32 graph drifts
    path, _ = make_checkpoint("tiny-asr")
    base = ["export", str(path), "--tokenizer", str(base_tokenizer), "--llm", "fp32"]
    assert main(base + ["--out", str(tmp_path / "gone")]) == 6
    err = capsys.readouterr().err
    assert "parity with the torch reference broken" in err and "audio_encoder: max abs error" in err
    assert not (tmp_path / "gone").exists()
    assert main(base + ["--out", str(tmp_path / "kept"), "--allow-drift"]) == 0
    capsys.readouterr()
    manifest = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    assert manifest["parity"]["passed"] is False and manifest["parity"]["failures"]
    # verify checks the bundle against its own tokens at export, not torch's: a quantized bundle whose
    # greedy tokens differ from torch's still verifies
    edit_manifest(tmp_path / "kept", lambda m: m["self_test"].update(reference_tokens=[7, 7, 7]))
    assert main(["verify", str(tmp_path / "kept"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["self_test"] == "pass" and len(out["manifest_sha256"]) == 64
    assert main(["verify", str(tmp_path / "kept"), "--digest", "0" * 64]) == 4
    assert "not the pinned" in capsys.readouterr().err


def test_force_replaces_only_a_bundle(tmp_path, make_checkpoint, base_tokenizer, capsys, monkeypatch):
    path, _ = make_checkpoint("tiny-asr")
    base = ["export", str(path), "--tokenizer", str(base_tokenizer), "--force"]
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    assert main(base + ["--out", str(work)]) == 2  # not a bundle: --force refuses to wipe it
    assert "replaces only a bundle directory" in capsys.readouterr().err and (work / "notes.txt").exists()
    (work / "manifest.json").write_text("{}")
    monkeypatch.chdir(work)
    assert main(base + ["--out", "."]) == 2  # the current directory, even one holding a manifest
    assert (work / "notes.txt").exists()


def test_graphs_are_linked_only_from_an_export_of_the_same_weights(tmp_path, make_checkpoint, base_tokenizer):
    """The bench links a stage's graph from an earlier export when it would be the same graph: equal
    configs are not enough (another checkpoint's encoders would be linked), equal weights are."""
    tok = None
    logs: dict[str, list[str]] = {}
    for name, seed, reuse in (("first", 0, ()), ("same", 0, ("first",)), ("other", 1, ("first",))):
        path, _ = make_checkpoint("tiny-asr", seed=seed)
        model, _ = load_model(path)
        tok = tok or load_tokenizer(base_tokenizer, expected_size=model.cfg.llm.vocab)
        logs[name] = []
        export_bundle(model, tok, tmp_path / name, ExportOptions(parity=False, reuse=tuple(str(tmp_path / r)
                                                                                          for r in reuse)),
                      {"checkpoint": path.name}, log=logs[name].append)
    assert any("audio_encoder: linked from" in line for line in logs["same"])
    assert not any("linked from" in line for line in logs["other"]), logs["other"]
    first = load_bundle(tmp_path / "first").stages
    assert first["audio_encoder"].weights_sha256 != load_bundle(tmp_path / "other").stages["audio_encoder"].weights_sha256
