"""TTS engines with phone timings, and the channel effects of the demo corpus."""

import numpy as np
import pytest

from smop_edge.recipe import speech_synth
from smop_edge.recipe.speech_synth import Channel, Voice, synthesize
from smop_edge.runtime.features import SAMPLE_RATE


@pytest.mark.parametrize("voice", [Voice("flite", "kal"), Voice("festival", "kal_diphone"), Voice("espeak", "en-us+f3")])
def test_each_engine_gives_speech_and_ordered_phone_times(voice):
    audio, phones = synthesize("seven, bee four", voice)
    duration = len(audio) / SAMPLE_RATE
    assert 0.6 < duration < 4.0 and np.abs(audio).max() > 0.05
    ends = [t for _, t in phones]
    spoken = [t for p, t in phones if p not in ("pau", "sil")]
    assert ends == sorted(ends) and spoken[-1] <= duration + 0.05  # a closing pause may run past the audio
    names = {p for p, _ in phones}
    assert {"s", "eh", "v"} <= names  # "seven", in the viseme table's phone names
    # the speech happens where the phones say: the loudest 100 ms lies inside a non-pause phone
    frame = SAMPLE_RATE // 10
    loud = np.argmax([np.abs(audio[i:i + frame]).mean() for i in range(0, len(audio) - frame, frame)]) * 0.1 + 0.05
    start = 0.0
    for phone, end in phones:
        if start <= loud < end:
            assert phone not in ("pau", "sil")
        start = end


def _espeak_k() -> np.ndarray:
    return synthesize("k", Voice("espeak", "en-us+f3"))[0]


def test_espeak_says_the_same_thing_the_same_way_whatever_came_before():
    """espeak-ng keeps state between syntheses and draws from libc's rand(): the same request must still
    give the same samples after other requests, after rand() was used, and in a fresh process."""
    import ctypes
    import multiprocessing

    first = _espeak_k()
    synthesize("hello there, seven b", Voice("espeak", "en-us+m1"))
    synthesize("k k k", Voice("espeak", "en-us+f3"))
    ctypes.CDLL(None).srand(77)
    assert np.array_equal(_espeak_k(), first)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert np.array_equal(pool.apply(_espeak_k), first)
    with pytest.raises(RuntimeError, match="no voice"):
        synthesize("k", Voice("espeak", "xx-nowhere"))


def test_rate_changes_duration():
    fast, _ = synthesize("one two three four", Voice("flite", "slt"), rate=1.4)
    slow, _ = synthesize("one two three four", Voice("flite", "slt"), rate=0.8)
    assert len(slow) > 1.4 * len(fast)


def test_voice_splits_are_disjoint_and_cover_every_engine():
    train = {v.id for v in speech_synth.TRAIN_VOICES}
    test = {v.id for v in speech_synth.TEST_VOICES}
    sealed = {v.id for v in speech_synth.SEALED_VOICES}
    assert not train & test and not sealed & (train | test)
    variants = {split: {v.name.split("+")[1] for v in voices if v.engine == "espeak"}
                for split, voices in speech_synth.VOICES.items()}
    assert not variants["sealed"] & (variants["train"] | variants["test"])  # not even the variant is known
    for voices in (speech_synth.TRAIN_VOICES, speech_synth.TEST_VOICES):
        assert {v.engine for v in voices} == {"flite", "festival", "espeak"}


def test_every_sealed_voice_speaks():
    for voice in speech_synth.SEALED_VOICES:
        audio, phones = speech_synth.synthesize("seven k", voice)
        assert len(audio) > 0.3 * SAMPLE_RATE and np.sqrt(np.mean(audio ** 2)) > 1e-3, voice.id


def _band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


def test_telephone_channel_keeps_300_to_3400_hz_and_the_level():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    out = Channel(telephone=True, level_db=-6).apply(noise)
    assert abs(len(out) - len(noise)) < 40
    assert _band_energy(out, 3800, 8000) < 0.01 and _band_energy(out, 0, 200) < 0.02
    assert np.abs(out).max() == pytest.approx(10 ** (-6 / 20), rel=1e-3)


def test_pitch_shift_moves_a_tone():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    out = Channel(pitch=12).apply(tone)  # one octave up
    f = np.fft.rfftfreq(len(out), 1 / SAMPLE_RATE)
    assert abs(f[np.argmax(np.abs(np.fft.rfft(out)))] - 400) < 10
