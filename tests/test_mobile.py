"""Mobile exports on a tiny official-layout checkpoint: the ORT format (ONNX Runtime Mobile) is converted from the
bundle's ONNX graphs, every graph checked against its source; LiteRT is exported from torch in the mobile
exporters' environment (build/envs/mobile, made by scripts/setup.sh: litert-torch needs numpy 2). Each is
run-checked against the ONNX bundle of the same checkpoint on the self-test and the sample clips
(`verify --against`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from smop_edge.apps.cli import main
from smop_edge.runtime.bundle import load_bundle


@pytest.fixture(scope="module")
def ort_bundle(tmp_path_factory, make_checkpoint, base_tokenizer):
    """The tiny DEDR checkpoint exported as an ORT-format bundle with the fp32 ONNX fixture's settings."""
    path, _ = make_checkpoint("tiny-dedr")
    out = tmp_path_factory.mktemp("ort") / "bundle"
    assert main(["export", str(path), "--tokenizer", str(base_tokenizer), "--out", str(out), "--format", "ort",
                 "--experts", "fp32", "--llm", "fp32"]) == 0
    return out


def test_the_ort_bundle_holds_ort_graphs_and_their_operator_list(ort_bundle):
    bundle = load_bundle(ort_bundle)
    m = bundle.manifest
    graphs = [f for s in m.stages.values() for f in s.files()]
    assert m.format == "ort" and graphs and all(f.endswith(".ort") for f in graphs)
    assert not list(ort_bundle.glob("*.onnx"))
    assert all((ort_bundle / f).read_bytes()[4:8] == b"ORTM" for f in graphs)  # the flatbuffer's identifier
    config = (ort_bundle / "required_operators_and_types.config").read_text()
    assert "required_operators_and_types.config" in m.files
    assert all(f"# - {f}\n" in config for f in graphs) and "ai.onnx;" in config and str(ort_bundle) not in config
    check = m.parity["ort_vs_onnx"]
    assert check["tokens_equal"] and set(check["max_abs"]) == {f[:-4] for f in graphs}
    assert max(check["max_abs"].values()) < 1e-4  # fp32 graphs: rounding only
    assert m.parity["passed"]


def test_verify_runs_the_ort_bundle_and_checks_it_against_its_onnx_source(ort_bundle, dedr_bundle, capsys):
    assert main(["verify", str(ort_bundle), "--against", str(dedr_bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    inputs = report["against"]["inputs"]
    assert report["self_test"] == "pass" and len(inputs) == 4  # the self-test and the three sample clips
    assert all(i["tokens_equal"] for i in inputs) and inputs[1]["task"] == "avsr"
    assert main(["verify", str(ort_bundle), "--backend", "openvino"]) == 2  # OpenVINO cannot read ORT format
    assert "use --backend onnxruntime" in capsys.readouterr().err


def test_a_run_check_against_another_model_is_refused(ort_bundle, tmp_path, make_checkpoint, base_tokenizer, capsys):
    other = tmp_path / "jejr"
    path, _ = make_checkpoint("tiny-jejr")
    assert main(["export", str(path), "--tokenizer", str(base_tokenizer), "--out", str(other), "--experts", "fp32",
                 "--llm", "fp32"]) == 0
    assert main(["verify", str(ort_bundle), "--against", str(other)]) == 4
    assert "different models" in capsys.readouterr().err


MOBILE_PYTHON = Path(__file__).resolve().parent.parent / "build" / "envs" / "mobile" / "bin" / "python"


def in_mobile_env(*args: str) -> subprocess.CompletedProcess:
    """`smop-edge ARGS` in the mobile exporters' environment."""
    return subprocess.run([str(MOBILE_PYTHON), "-m", "smop_edge.apps.cli", *args], capture_output=True, text=True)


def export_in_mobile_env(fmt: str, tmp_path_factory, make_checkpoint, base_tokenizer) -> Path:
    """The tiny DEDR checkpoint exported as `fmt` (with its default weights) by the mobile exporters'
    environment."""
    if not MOBILE_PYTHON.exists():
        pytest.skip("no mobile exporters' environment: bash scripts/setup.sh makes build/envs/mobile")
    path, _ = make_checkpoint("tiny-dedr")
    out = tmp_path_factory.mktemp(fmt) / "bundle"
    done = in_mobile_env("export", str(path), "--tokenizer", str(base_tokenizer), "--out", str(out), "--format", fmt)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def verified_against(bundle: Path, source: Path) -> dict:
    """`verify BUNDLE --against SOURCE --json` run in the mobile exporters' environment (exit 0): its report."""
    done = in_mobile_env("verify", str(bundle), "--against", str(source), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def litert_bundle(tmp_path_factory, make_checkpoint, base_tokenizer):
    """The tiny DEDR checkpoint as a LiteRT bundle (static; int8 experts and LLM, the default)."""
    return export_in_mobile_env("litert", tmp_path_factory, make_checkpoint, base_tokenizer)


def test_the_litert_bundle_is_static_int8_and_runs_the_same_tokens(litert_bundle, dedr_bundle):
    m = load_bundle(litert_bundle).manifest
    graphs = [f for s in m.stages.values() for f in s.files()]
    assert m.format == "litert" and m.static and all(f.endswith(".tflite") for f in graphs)
    assert len(m.stages["video_encoder"].buckets) == 2 and m.quantization.experts == m.quantization.llm == "int8"
    fp32_decoder = (dedr_bundle / "decoder.onnx").stat().st_size  # the same weights in fp32
    assert (litert_bundle / "decoder.tflite").stat().st_size < 0.6 * fp32_decoder
    assert all("?" not in map(str, t.shape) and all(isinstance(d, int) for d in t.shape)
               for s in m.stages.values() for g in (s.buckets or [s]) for t in g.inputs)  # every shape static
    assert m.parity["passed"] and m.parity["backend"] == "litert"
    report = verified_against(litert_bundle, dedr_bundle)
    assert report["backend"] == "litert" and len(report["against"]["inputs"]) == 4
    assert all(i["tokens_equal"] for i in report["against"]["inputs"])


def test_without_ai_edge_litert_a_litert_bundle_says_what_to_install(litert_bundle, capsys):
    try:
        import ai_edge_litert  # noqa: F401
        pytest.skip("ai-edge-litert is installed here")
    except ModuleNotFoundError:
        pass
    assert main(["verify", str(litert_bundle)]) == 2
    assert "pip install ai-edge-litert" in capsys.readouterr().err


@pytest.fixture(scope="module")
def executorch_bundle(tmp_path_factory, make_checkpoint, base_tokenizer):
    """The tiny DEDR checkpoint as an ExecuTorch bundle (XNNPACK, dynamic shapes, int8 experts and LLM)."""
    return export_in_mobile_env("executorch", tmp_path_factory, make_checkpoint, base_tokenizer)


def test_the_executorch_bundle_keeps_dynamic_shapes_and_runs_the_same_tokens(executorch_bundle, dedr_bundle):
    m = load_bundle(executorch_bundle).manifest
    graphs = [f for s in m.stages.values() for f in s.files()]
    assert m.format == "executorch" and not m.static and all(f.endswith(".pte") for f in graphs)
    assert m.quantization.experts == m.quantization.llm == "int8"
    assert (executorch_bundle / "decoder.pte").stat().st_size < 0.6 * (dedr_bundle / "decoder.onnx").stat().st_size
    assert m.stages["decoder"].inputs[1].shape[3] == "past_length"  # dynamic, named as in the ONNX bundle
    assert m.stages["decoder"].outputs[1].shape[3] == "length + past_length"
    assert [t.name for t in m.stages["decoder"].outputs] == ["logits", "present_keys", "present_values"]
    assert m.parity["passed"] and m.parity["backend"] == "executorch"
    report = verified_against(executorch_bundle, dedr_bundle)
    assert report["backend"] == "executorch" and all(i["tokens_equal"] for i in report["against"]["inputs"])


def test_an_executorch_bundle_outside_its_environment_says_where_it_runs(executorch_bundle, capsys):
    try:
        import executorch  # noqa: F401
        pytest.skip("executorch is installed here")
    except ModuleNotFoundError:
        pass
    assert main(["verify", str(executorch_bundle)]) == 2
    assert "executorch" in capsys.readouterr().err


def test_a_static_openvino_bundle_is_checked_for_an_npu_as_far_as_this_machine_allows(tmp_path_factory,
                                                                                       make_checkpoint,
                                                                                       base_tokenizer):
    """scripts/npu_readiness.py: every shape static, the CPU plugin's f32 self-test, the compile cache; the NPU
    run where OpenVINO lists one (not here: reported as not run, not as passed)."""
    import subprocess
    import sys

    path, _ = make_checkpoint("tiny-jejr")
    out = tmp_path_factory.mktemp("npu") / "bundle"
    assert main(["export", str(path), "--tokenizer", str(base_tokenizer), "--out", str(out), "--format", "openvino",
                 "--static", "--experts", "fp32", "--llm", "fp32", "--video-buckets", "30,60",
                 "--kv-capacity", "128"]) == 0
    script = Path(__file__).resolve().parent.parent / "scripts" / "npu_readiness.py"
    done = subprocess.run([sys.executable, str(script), str(out), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["static"] and report["cache"] and report["cpu_f32_self_test"]
    assert len(report["graphs"]) == 5  # audio, two video buckets, projector, decoder
    assert all(g["cache_written"] for g in report["graphs"].values())
    if not any(d.startswith("NPU") for d in report["devices"]):
        assert report["npu_self_test"] is None
    dynamic = tmp_path_factory.mktemp("dyn") / "bundle"  # a dynamic bundle is refused, not reported ready
    assert main(["export", str(path), "--tokenizer", str(base_tokenizer), "--out", str(dynamic), "--format",
                 "openvino", "--experts", "fp32", "--llm", "fp32"]) == 0
    refused = subprocess.run([sys.executable, str(script), str(dynamic)], capture_output=True, text=True)
    assert refused.returncode != 0 and "not a static OpenVINO bundle" in refused.stderr
