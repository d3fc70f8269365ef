"""The typed bundle manifest: what export writes reads back equal, and a damaged manifest is a bundle
error (exit 4) that names the field, never a KeyError."""

from __future__ import annotations

import json
import shutil

import pytest

from smop_edge.apps.cli import main
from smop_edge.runtime import DEMO_BUNDLE
from smop_edge.runtime.bundle import load_bundle
from smop_edge.runtime.errors import BundleError
from smop_edge.runtime.manifest import Manifest


@pytest.fixture
def bundle(tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, out)
    return out


def _edit(bundle, change) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    change(data)
    (bundle / "manifest.json").write_text(json.dumps(data))


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
])
def test_damaged_manifest_is_a_bundle_error(bundle, change, message, capsys):
    _edit(bundle, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle, verify=False)
    assert main(["transcribe", str(DEMO_BUNDLE.parent / "samples" / "sample-2.mp4"), "--bundle", str(bundle),
                 "--quiet"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("smop-edge: error:") and "Traceback" not in err


def test_not_json_is_a_bundle_error(bundle):
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt manifest.json"):
        load_bundle(bundle)
