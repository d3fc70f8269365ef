import numpy as np

from conftest import tone_bursts
from smop_edge.runtime import segments


def test_short_inputs_stay_whole_and_long_ones_are_cut_in_pauses():
    short = tone_bursts(10.0)
    assert segments.split(short) == [(0, len(short))]
    audio = tone_bursts(61.0)  # bursts of 1/3 s with 1/3 s pauses
    spans = segments.split(audio, max_seconds=24.0)
    assert spans[0][0] == 0 and spans[-1][1] == len(audio)
    assert all(b - a <= 24 * 16000 for a, b in spans)
    assert all(s[1] == t[0] for s, t in zip(spans, spans[1:]))  # contiguous, nothing lost
    db = segments.frame_energy_db(audio)
    for _, cut in spans[:-1]:
        assert db[cut // segments.FRAME] < db.max() - 20  # every cut falls in a pause


def test_silence_and_steady_noise_hold_no_speech():
    rng = np.random.default_rng(0)
    assert segments.is_silent(np.zeros(16000, np.float32))
    assert segments.is_silent((0.01 * rng.standard_normal(32000)).astype(np.float32))
    assert not segments.is_silent(tone_bursts(2.0))
