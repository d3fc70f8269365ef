"""The shipped demo model (models/demo/): its size, official layout, and its transcripts of the sample
clips (held-out voices and faces) through the default bundle, as the README's main job prints them."""

import json
from pathlib import Path

import pytest

from smop_edge.apps.cli import main

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def test_checkpoint_and_bundle_fit_in_40_mb_and_the_checkpoint_is_official(capsys):
    assert _size(DEMO / "checkpoint.pth") + _size(DEMO / "bundle") <= 40 * 1024 * 1024
    assert main(["inspect", str(DEMO / "checkpoint.pth"), "--tokenizer", str(DEMO / "tokenizer.json"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["name"] == "demo-dedr"
    assert report["config"]["projector"]["layout"] == "DEDR"


def test_bundle_verifies_and_is_int8_experts(capsys):
    assert main(["verify", str(DEMO / "bundle")]) == 0
    manifest = json.loads((DEMO / "bundle" / "manifest.json").read_text())
    assert manifest["quantization"]["experts"] == "int8"


@pytest.mark.parametrize("row", [json.loads(line) for line in (DEMO / "samples" / "manifest.jsonl").read_text().splitlines()],
                         ids=lambda r: r["path"])
def test_default_bundle_transcribes_the_samples(row, capsys):
    assert main(["transcribe", str(DEMO / "samples" / row["path"]), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "avsr"
    assert result["text"] == row["text"]
