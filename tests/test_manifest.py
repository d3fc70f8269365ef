"""The typed bundle manifest: what export writes reads back equal, and a damaged manifest is a bundle
error (exit 4) that names the field, never a KeyError."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import edit_manifest

from smop_edge.apps.cli import main
from smop_edge.runtime import DEMO_BUNDLE, load_recognizer
from smop_edge.runtime.bundle import load_bundle, sha256_file
from smop_edge.runtime.errors import BundleError
from smop_edge.runtime.manifest import Manifest, resolve_backend


@pytest.fixture
def bundle(tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, out)
    return out


def test_round_trip_is_exact():
    data = json.loads((DEMO_BUNDLE / "manifest.json").read_text())
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict() == data
    assert manifest.model.llm.vocab == manifest.embeddings.shape[0]
    assert manifest.stages["projector"].graph().inputs[0].name == "audio_tokens"


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("stages"), r"missing field\(s\) stages"),
    (lambda d: d["model"]["llm"].update(layers="two"), r"manifest.model.llm.layers: expected int, got str"),
    (lambda d: d["stages"]["decoder"]["inputs"][0].update(shape=[1, None]), r"decoder.inputs\[0\].shape\[1\]"),
    (lambda d: d.update(static=[]), r"manifest.static"),
    (lambda d: d["self_test"].update(extra=1), r"unknown field\(s\) extra"),
    (lambda d: d.update(schema_version=2), r"unsupported bundle schema 2"),
    (lambda d: d.update(format="tflite"), r"unknown format 'tflite'"),
    (lambda d: d["files"].pop("decoder.onnx"), r"not listed with a sha256: decoder.onnx"),
    (lambda d: d["files"].update({"../escape.onnx": "0" * 64}), r"outside the bundle directory: ../escape.onnx"),
    (lambda d: d["preprocessing"].update(pixel_mean=0.5), r"other preprocessing constants"),
    # found by scripts/fuzz.py: fields that parsed but crashed later
    (lambda d: d["stages"]["projector"].pop("input_widths"), r"projector's input widths None"),
    (lambda d: d["model"].update(tasks=[]), r"at least one task"),
    (lambda d: d["model"]["audio_compression"].update(rate=0), r"audio_compression.rate must be at least 1"),
    (lambda d: d["stages"].pop("projector"), r"needs stage\(s\) projector"),
    (lambda d: d["self_test"].update(max_new_tokens=-1), r"self_test.max_new_tokens must be at least 1"),
])
def test_damaged_manifest_is_a_bundle_error(bundle, change, message, capsys):
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle, verify=False)
    assert main(["transcribe", _sample(), "--bundle", str(bundle), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("smop-edge: error:") and "Traceback" not in err


def test_not_json_is_a_bundle_error(bundle):
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt manifest.json"):
        load_bundle(bundle)


def _sample() -> str:
    return str(DEMO_BUNDLE.parent / "samples" / "sample-2.mp4")


def _symlink_out(bundle, tmp_path):
    """decoder.onnx replaced by a link to an identical copy outside the bundle (its digest still matches)."""
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle / "decoder.onnx", outside)
    (bundle / "decoder.onnx").unlink()
    (bundle / "decoder.onnx").symlink_to(outside)


@pytest.mark.parametrize("damage, message", [
    (lambda b, t: edit_manifest(b, lambda d: d["quantization"].update(llm="fp32"), reseal=False),
     "manifest.json was modified since export"),
    (lambda b, t: (b / "manifest.json.sha256").unlink(), "manifest.json.sha256 is missing"),
    (lambda b, t: (b / "decoder.onnx").rename(b / "decoder2.onnx"), r"sha256 mismatch\): decoder.onnx"),
    (lambda b, t: (b / "tokenizer.json").unlink(), r"sha256 mismatch\): tokenizer.json"),
    (_symlink_out, r"sha256 mismatch\): decoder.onnx"),
])
def test_bundle_files_are_checked_before_anything_loads(bundle, tmp_path, damage, message, capsys):
    damage(bundle, tmp_path)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)
    assert main(["transcribe", _sample(), "--bundle", str(bundle), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("smop-edge: error:") and err.count("\n") == 1


def test_only_listed_files_inside_the_bundle_are_opened(bundle, tmp_path):
    (bundle / "decoder.extra").write_text("never opened")  # unlisted: ignored, even beside a graph's name
    loaded = load_bundle(bundle)
    assert [p.name for p in loaded.stage_files("decoder")] == ["decoder.onnx"]
    with pytest.raises(BundleError, match="not listed"):
        loaded.file("decoder.extra")
    _symlink_out(bundle, tmp_path)
    with pytest.raises(BundleError, match="not a plain file inside the bundle"):
        load_bundle(bundle, verify=False).file("decoder.onnx")


def test_a_pinned_manifest_digest_fixes_the_bundle(bundle):
    digest = (bundle / "manifest.json.sha256").read_text().split()[0]
    assert load_recognizer(bundle, digest=digest).bundle.digest == digest
    # someone rewrites a graph and every digest after it: the bundle checks out, the pin does not
    with open(bundle / "projector.onnx", "ab") as f:
        f.write(b"\0")
    edit_manifest(bundle, lambda d: d["files"].update({"projector.onnx": sha256_file(bundle / "projector.onnx")}))
    load_bundle(bundle)
    with pytest.raises(BundleError, match="not the pinned"):
        load_recognizer(bundle, digest=digest)


def test_a_graph_that_will_not_load_is_a_bundle_error(bundle, capsys):
    (bundle / "projector.onnx").write_bytes(b"not a graph at all")
    edit_manifest(bundle, lambda d: d["files"].update({"projector.onnx": sha256_file(bundle / "projector.onnx")}))
    assert main(["transcribe", _sample(), "--bundle", str(bundle), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert f"cannot load graph projector.onnx on {resolve_backend('auto', 'onnx')}: " in err
    assert "Exception from src/" not in err  # OpenVINO's first lines name its sources, not the problem
    assert main(["transcribe", _sample(), "--backend", "openvino", "--device", "NPU"]) == 2
    assert "OpenVINO device NPU is not available" in capsys.readouterr().err


def test_a_manifest_that_misdescribes_its_graphs_is_a_bundle_error(bundle, capsys):
    edit_manifest(bundle, lambda d: d["model"]["llm"].update(kv_heads=4))  # valid alone; the graph has 2
    assert main(["transcribe", _sample(), "--bundle", str(bundle), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "rejected its inputs" in err and err.count("\n") == 1


@pytest.mark.parametrize("figures", [[], "", {"token_agreement": ""}])
def test_verify_shows_free_form_parity_figures_only_when_well_formed(bundle, figures, capsys):
    """Found by scripts/fuzz.py: a mangled `parity` section (free-form figures) crashed verify's report."""
    edit_manifest(bundle, lambda d: d["parity"].update(end_to_end=figures))
    assert main(["verify", str(bundle)]) == 0
    assert "self-test (onnxruntime, avsr): pass" in capsys.readouterr().out


def test_auto_picks_the_engine_measured_fastest_for_the_format(monkeypatch):
    """`auto`: OpenVINO for ONNX graphs on x86-64 (where it is installed), the format's own engine elsewhere;
    a named backend is kept; `rec.backend` says which one runs."""
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert resolve_backend("auto", "onnx") == "openvino"
    assert [resolve_backend("auto", f) for f in ("ort", "openvino", "litert")] == ["onnxruntime", "openvino", "litert"]
    assert resolve_backend("onnxruntime", "onnx") == "onnxruntime"
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # a Pi: OpenVINO not measured there
    assert resolve_backend("auto", "onnx") == "onnxruntime"
    assert load_recognizer().backend == "onnxruntime"
    monkeypatch.undo()
    assert load_recognizer(backend="onnxruntime").backend == "onnxruntime"
