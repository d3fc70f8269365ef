"""Utterances composed from the word bank: words where the spans say, framewise labels, resumable build."""

import numpy as np
import pytest

from smop_edge.recipe import word_bank
from smop_edge.recipe.corpus import WORDS
from smop_edge.recipe.word_bank import SILENCE, WordBank, frame_labels, trim
from smop_edge.runtime.features import SAMPLE_RATE


def test_trim_cuts_silence_but_keeps_a_margin():
    tone = 0.5 * np.sin(np.arange(SAMPLE_RATE // 2) * 0.1).astype(np.float32)
    audio = np.concatenate([np.zeros(8000, np.float32), tone, np.zeros(4000, np.float32)])
    out = trim(audio)
    assert len(tone) <= len(out) <= len(tone) + 2 * 160 + 2 * 160


def test_bank_has_every_word_of_each_voice_and_rebuild_keeps_files(tiny_word_bank):
    bank = WordBank(tiny_word_bank)
    assert set(bank.words) == {("flite:kal", 0), ("espeak:en-us+m1", 0)}
    for clips in bank.words.values():
        assert len(clips) == len(WORDS)
        seconds = np.array([len(c) for c in clips]) / SAMPLE_RATE
        assert (seconds > 0.08).all() and (seconds < 1.2).all()
    files = {p: p.stat().st_mtime_ns for p in tiny_word_bank.iterdir()}
    voices = [v for v in word_bank.speech_synth.TRAIN_VOICES if v.id == "flite:kal"]
    word_bank.build(tiny_word_bank, voices=voices, variants=1)
    assert {p: p.stat().st_mtime_ns for p in tiny_word_bank.iterdir()} == files


def test_a_file_made_with_other_rate_and_pitch_is_rebuilt(tiny_word_bank, tmp_path):
    path = tmp_path / "flite_kal-0.npz"
    path.write_bytes((tiny_word_bank / "flite_kal-0.npz").read_bytes())
    voices = [v for v in word_bank.speech_synth.TRAIN_VOICES if v.id == "flite:kal"]
    with np.load(path) as data:
        made_with = data["params"].copy()
    word_bank.build(tmp_path, seed=1, voices=voices, variants=1)  # seed 1 draws another rate and pitch
    with np.load(path) as data:
        assert not np.allclose(data["params"], made_with)
        rate, pitch = data["params"]
    assert word_bank.RATES[0] <= rate <= word_bank.RATES[1]
    assert word_bank.PITCH[0] <= pitch <= word_bank.PITCH[1]


def test_test_voices_are_refused(tmp_path):
    with pytest.raises(ValueError, match="training voices"):
        word_bank.build(tmp_path, voices=word_bank.speech_synth.TEST_VOICES[:1], variants=1)


def test_composed_words_lie_inside_their_spans(tiny_word_bank):
    bank = WordBank(tiny_word_bank)
    rng = np.random.default_rng(3)
    for _ in range(20):
        c = bank.compose(rng)
        words = c.text.split()
        assert [WORDS[w] for _, _, w in c.spans] == words
        starts = [s for s, _, _ in c.spans]
        assert starts == sorted(starts) and all(s < e <= len(c.audio) for s, e, _ in c.spans)
        inside = np.zeros(len(c.audio), bool)
        for s, e, _ in c.spans:
            inside[s:e] = True
        # nearly all the energy is inside the word spans (the rest is channel ringing)
        energy = c.audio.astype(np.float64) ** 2
        assert energy[inside].sum() > 0.97 * energy.sum()
    assert bank.engines == ["flite", "espeak"]


def test_frame_labels_follow_token_centres():
    spans = [(1000, 3000, 5), (4000, 6400, 12)]
    labels = frame_labels(spans, 6, 1280)  # centres at 640, 1920, 3200, 4480, 5760, 7040
    assert labels.tolist() == [SILENCE, 5, SILENCE, 12, 12, SILENCE]
