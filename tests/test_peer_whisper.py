"""scripts/peer_whisper.py: Whisper tiny.en driven through eval's own evaluator, its text mapped to the
demo domain's words."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from smop_edge.apps.peer import domain_words
from smop_edge.runtime.scoring import edit_distance, words

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("peer_whisper", ROOT / "scripts" / "peer_whisper.py")
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)


def test_free_text_becomes_domain_words():
    assert domain_words("Okay, 2934 B!") == "okay two nine three four b"
    assert domain_words("0k") == "zero k"
    assert domain_words("") == ""


def test_peer_reads_the_sample_clips(capsys):
    pytest.importorskip("faster_whisper")
    manifest = ROOT / "models" / "demo" / "samples" / "manifest.jsonl"
    assert peer.main([str(manifest), "--snr", "clean", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "asr" and [c["snr"] for c in report["conditions"]] == [None, 0.0]
    rows = report["conditions"][0]["rows"]
    assert len(rows) == 3 and all(r["hypothesis"] == domain_words(r["hypothesis"]) for r in rows)
    scored = [domain_words(r["hypothesis"]) for r in rows]
    assert report["conditions"][0]["errors"] == sum(
        edit_distance(words(r["reference"]), words(h)) for r, h in zip(rows, scored))  # scored as eval scores
    assert report["conditions"][0]["words"] == sum(len(words(r["reference"])) for r in rows)
