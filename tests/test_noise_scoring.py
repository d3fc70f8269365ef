"""Noise mixing at a given SNR, babble, and corpus-level WER with its error kinds."""

import numpy as np
import pytest

from smop_edge.recipe import noise
from smop_edge.runtime.errors import UsageError
from smop_edge.runtime.scoring import WordErrors, corpus_wer, edit_distance, word_errors


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0])
@pytest.mark.parametrize("kind", ["white", "pink"])
def test_mix_at_snr_gives_the_requested_ratio(kind, snr):
    rng = np.random.default_rng(1)
    speech = np.sin(np.arange(16000) * 0.05).astype(np.float32)
    n = noise.noise_like(kind, len(speech), rng)
    mixed = noise.mix_at_snr(speech, n, snr)
    added = mixed - speech
    measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.01)


def test_pink_noise_falls_with_frequency():
    x = noise.pink(1 << 16, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(x)) ** 2
    assert spec[100:200].mean() > 10 * spec[10000:20000].mean()


def test_babble_is_many_talkers_and_a_file_loops(tmp_path):
    from conftest import write_wav

    b = noise.babble("train", seconds=4.0, seed=3)
    assert len(b) == 64000 and np.sqrt(np.mean(b ** 2)) == pytest.approx(1.0, rel=1e-3)
    # many overlapping talkers: hardly any silent 50 ms stretch
    frames = np.abs(b[: 63200].reshape(-1, 800)).mean(1)
    assert (frames < 0.05 * frames.mean()).mean() < 0.05
    path = tmp_path / "hum.wav"
    write_wav(path, (0.2 * np.sin(np.arange(8000) * 0.1)).astype(np.float32))
    looped = noise.noise_like(str(path), 20000, np.random.default_rng(0))
    assert len(looped) == 20000 and np.abs(looped).max() > 0.1
    with pytest.raises(UsageError):
        noise.noise_like("thunder", 100, np.random.default_rng(0))


def test_babble_does_not_depend_on_what_the_process_synthesised_before():
    """espeak-ng's output depends on libc's rand() state and on its own earlier calls: the same babble
    must come out whatever the calling process did first (eval was off by a few words between runs)."""
    import ctypes

    from smop_edge.recipe import speech_synth

    first = noise.babble.__wrapped__("test", seconds=3.0)
    ctypes.CDLL(None).rand()
    for voice in speech_synth.TEST_VOICES[:4]:
        speech_synth.synthesize("the garden needs water", voice)
    assert np.array_equal(first, noise.babble.__wrapped__("test", seconds=3.0))


def test_wer_is_corpus_level_and_case_insensitive():
    assert edit_distance("a b c".split(), "a x c d".split()) == 2
    wer, errors, words = corpus_wer([("seven B four", "seven b"), ("one", "one"), ("z", "")])
    assert (errors, words) == (2, 5) and wer == pytest.approx(0.4)


def _every_alignment(ref: tuple, hyp: tuple) -> set[tuple[int, int, int]]:
    """(substitutions, deletions, insertions) of every alignment of hyp to ref, by brute force."""
    if not ref or not hyp:
        return {(0, len(ref), len(hyp))}
    out = {(s + (ref[0] != hyp[0]), d, i) for s, d, i in _every_alignment(ref[1:], hyp[1:])}
    out |= {(s, d + 1, i) for s, d, i in _every_alignment(ref[1:], hyp)}
    return out | {(s, d, i + 1) for s, d, i in _every_alignment(ref, hyp[1:])}


def test_word_errors_split_a_minimum_edit_alignment_into_kinds():
    assert word_errors("a b c".split(), "a x c d".split()) == WordErrors(substitutions=1, insertions=1)
    assert word_errors("seven b four".split(), []) == WordErrors(deletions=3)
    assert word_errors("a b".split(), "b c".split()) == WordErrors(substitutions=2)  # not a deletion + an insertion
    rng = np.random.default_rng(0)
    for _ in range(300):
        ref = tuple(rng.choice(list("abc"), rng.integers(0, 6)))
        hyp = tuple(rng.choice(list("abcd"), rng.integers(0, 6)))
        errors, every = word_errors(list(ref), list(hyp)), _every_alignment(ref, hyp)
        cheapest = min(sum(a) for a in every)
        assert errors.total == edit_distance(list(ref), list(hyp)) == cheapest
        best = max((a for a in every if sum(a) == cheapest), key=lambda a: a[0])
        assert (errors.substitutions, errors.deletions, errors.insertions) in every
        assert errors.substitutions == best[0]
        assert len(hyp) == len(ref) - errors.deletions + errors.insertions
