"""The real-voice manifest: every source of real recordings in the Debian packages, decodable, in the domain."""

import json
from collections import Counter

import numpy as np
import pytest

from smop_edge.recipe import real_voices
from smop_edge.recipe.corpus import WORDS
from smop_edge.runtime.errors import UsageError
from smop_edge.runtime.media import read_audio


def test_manifest_holds_every_source_and_each_clip_decodes_to_speech(tmp_path):
    manifest = real_voices.write_manifest(tmp_path / "real")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert Counter(r["voice"] for r in rows) == {
        "klettres:en": 26, "klettres:en_GB": 26, "qabcs:en": 26, "asterisk:allison": 37,
        "asterisk:allison-strings": real_voices.N_STRINGS, "saytime": 11, "pocketsphinx:cards": 1, "tidigits:dhd": 1}
    assert len({r["id"] for r in rows}) == len(rows)
    # Allison's words and strings are one speaker; every other source is its own
    assert {r["id"] for r in rows if "speaker" in r} == {r["id"] for r in rows if r["voice"].startswith("asterisk:")}
    assert {r["speaker"] for r in rows if "speaker" in r} == {real_voices.ALLISON_SPEAKER}
    singles = {}
    for r in rows:
        assert set(r["text"].split()) <= set(WORDS), r
        audio = read_audio(manifest.parent / r["path"])
        assert 0.1 < len(audio) / 16000 < 20 and np.abs(audio).max() > 0.01, r["id"]
        if r["voice"] == "asterisk:allison":
            singles[r["text"]] = len(audio)
    for r in rows:  # a string is its words plus pauses, never shorter
        if r["voice"] == "asterisk:allison-strings":
            words = r["text"].split()
            assert 2 <= len(words) <= 6
            assert len(read_audio(manifest.parent / r["path"])) >= sum(singles[w] for w in words)
    again = real_voices.write_manifest(tmp_path / "again")  # seeded: the same strings
    assert again.read_text() == manifest.read_text()


def test_a_missing_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(real_voices, "SAYTIME", tmp_path / "no-saytime")
    with pytest.raises(UsageError, match="install saytime"):
        real_voices.write_manifest(tmp_path / "real")
