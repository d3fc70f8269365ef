import numpy as np
import pytest

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


def test_utterances_are_cut_in_every_long_pause_and_only_there():
    sr = 16000
    burst = tone_bursts(1.0)  # speech-like bursts with 1/3 s pauses: one utterance
    quiet = np.zeros(sr, np.float32)
    audio = np.concatenate([quiet[: sr // 2], burst, quiet, burst, quiet[: sr // 4], burst, quiet[: sr // 2]])
    spans = segments.utterances(segments.frame_energy_db(audio), len(audio), min_pause=0.6)
    assert spans[0][0] == 0 and spans[-1][1] == len(audio)
    assert all(s[1] == t[0] for s, t in zip(spans, spans[1:]))  # contiguous, nothing lost
    assert len(spans) == 2  # the 1 s pause ends an utterance; the 1/4 s one and the bursts' own pauses do not
    assert sr // 2 + len(burst) < spans[0][1] < sr // 2 + len(burst) + sr  # cut inside the long pause
    assert segments.utterances(segments.frame_energy_db(quiet), len(quiet), 0.6) == [(0, len(quiet))]


def test_silence_and_steady_noise_hold_no_speech():
    rng = np.random.default_rng(0)
    assert segments.is_silent(np.zeros(16000, np.float32))
    assert segments.is_silent((0.01 * rng.standard_normal(32000)).astype(np.float32))
    assert not segments.is_silent(tone_bursts(2.0))


def _flite(text: str, tmp_path):
    import subprocess

    from smop_edge.recipe.talking_face import parse_psdur
    from smop_edge.runtime.media import read_audio

    wav = tmp_path / f"{abs(hash(text))}.wav"
    out = subprocess.run(["flite", "-t", text, "-psdur", "-o", str(wav)], capture_output=True, text=True, check=True)
    return read_audio(wav), parse_psdur(out.stdout + out.stderr)


def measure_vad(tmp_path, snr_db: float | None) -> dict:
    """Frame-level speech detection against flite's phone labels (non-pause phones = speech) on
    utterances joined by 0.4-1.2 s gaps, optionally with white noise at `snr_db`."""
    rng = np.random.default_rng(0)
    pieces, labels = [], []
    for text in ["seven b four zero", "oh nine x", "k three three m q", "zero one two"]:
        audio, phones = _flite(text, tmp_path)
        label = np.zeros(len(audio) // segments.FRAME, bool)
        start = 0.0
        for phone, end in phones:
            if phone != "pau":
                label[int(start * 50): int(end * 50)] = True
            start = end
        gap = int(rng.uniform(0.4, 1.2) * 16000) // segments.FRAME * segments.FRAME
        pieces += [audio[: len(label) * segments.FRAME], np.zeros(gap, np.float32)]
        labels += [label, np.zeros(gap // segments.FRAME, bool)]
    audio, label = np.concatenate(pieces), np.concatenate(labels)
    if snr_db is not None:
        noise = rng.standard_normal(len(audio))
        scale = np.sqrt(np.mean(audio[np.repeat(label, segments.FRAME)] ** 2) / 10 ** (snr_db / 10))
        audio = (audio + scale * noise).astype(np.float32)
    got = segments.speech_mask(audio)[: len(label)]
    return {"accuracy": float((got == label).mean()), "recall": float(got[label].mean()),
            "false_alarm": float(got[~label].mean())}


@pytest.mark.parametrize("snr_db,min_accuracy,min_recall", [(None, 0.9, 0.85), (10.0, 0.8, 0.6)])
def test_speech_detection_against_phone_labels(tmp_path, snr_db, min_accuracy, min_recall):
    m = measure_vad(tmp_path, snr_db)
    assert m["accuracy"] >= min_accuracy and m["recall"] >= min_recall and m["false_alarm"] < 0.05, m
