"""The stream's voice-activity detectors on a sample clip with silence around it."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from smop_edge.runtime import DEMO_BUNDLE, StreamOptions, UsageError, load_recognizer, media
from smop_edge.runtime.features import SAMPLE_RATE
from smop_edge.runtime.vad import FRAME, make_vad

needs_silero = pytest.mark.skipif(importlib.util.find_spec("silero_vad") is None,
                                  reason="silero-vad's wheel is not installed (pip install --no-deps silero-vad)")
SPEECH = media.read_audio(DEMO_BUNDLE.parent / "samples" / "sample-2.mp4")


def padded(seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    quiet = (1e-3 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    return np.concatenate([quiet, SPEECH, quiet])


@pytest.mark.parametrize("name", ["energy", pytest.param("silero", marks=needs_silero)])
def test_speech_is_found_between_silences(name):
    audio, vad = padded(), make_vad(name)
    marks = np.array([vad(audio[i:i + FRAME]) for i in range(0, len(audio) - FRAME + 1, FRAME)])
    first, last = np.flatnonzero(marks)[[0, -1]] * FRAME / SAMPLE_RATE
    assert 1.8 <= first <= 2.6 and 2.0 + len(SPEECH) / SAMPLE_RATE - 0.8 <= last <= 2.2 + len(SPEECH) / SAMPLE_RATE
    assert not marks[:int(1.5 * SAMPLE_RATE / FRAME)].any()


@needs_silero
def test_a_stream_with_the_silero_vad_gives_the_utterance():
    rec = load_recognizer()
    stream = rec.create_stream(task="asr", stream_options=StreamOptions(vad="silero"))
    audio = padded()
    for start in range(0, len(audio), 1600):
        stream.accept_waveform(SAMPLE_RATE, audio[start:start + 1600])
    stream.input_finished()
    finals = [r for r in stream.decode() if r.final]
    assert len(finals) == 1
    (first, last), speech = finals[0].samples, (len(audio) - len(SPEECH)) // 2  # the range decoded covers the speech
    assert first <= speech and last >= speech + len(SPEECH) - FRAME
    assert finals[0].text == rec.transcribe(audio[first:last], None, "asr").text  # and is what was decoded


def test_an_unknown_vad_is_a_usage_error():
    with pytest.raises(UsageError, match="energy, silero"):
        make_vad("webrtc")
