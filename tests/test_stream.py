"""The live stream API on the shipped demo bundle: media fed chunk by chunk, as a live app would."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import joined_with_pauses, write_wav
from smop_edge.runtime import StreamOptions, UsageError, load_recognizer, media
from smop_edge.runtime.features import SAMPLE_RATE, VIDEO_FPS
from smop_edge.runtime.scoring import corpus_wer

from smop_edge.runtime import DEMO_BUNDLE

SAMPLES = DEMO_BUNDLE.parent / "samples"
ROWS = [json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def rec():
    return load_recognizer()


def feed(stream, audio: np.ndarray, frames=None, chunks=(1600,), rate: int = SAMPLE_RATE, seed: int = 0):
    """Feed `audio` (and RGB `frames` at 25 fps, each once the audio has reached its time) in chunks
    of sizes drawn from `chunks`, decoding after each; return every result in order."""
    rng = np.random.default_rng(seed)
    results, pos, shown = [], 0, 0
    while pos < len(audio):
        size = int(rng.choice(chunks))
        stream.accept_waveform(rate, audio[pos:pos + size])
        pos += size
        while frames is not None and shown < len(frames) and shown / VIDEO_FPS <= pos / rate:
            stream.accept_frame(frames[shown], shown / VIDEO_FPS)
            shown += 1
        results += stream.decode()
    while frames is not None and shown < len(frames):
        stream.accept_frame(frames[shown], shown / VIDEO_FPS)
        shown += 1
    stream.input_finished()
    return results + stream.decode()


def finals(results) -> list:
    return [r for r in results if r.final]


def spy_on(stream, seen: list):
    """`stream`, its recognizer wrapped so that the audio of every model run is appended to `seen`."""
    recognizer = stream.recognizer
    stream.recognizer = type("Spy", (), {"tasks": recognizer.tasks, "transcribe": staticmethod(
        lambda a, f, t, o: seen.append(a.copy()) or recognizer.transcribe(a, f, t, o))})()
    return stream


@pytest.mark.parametrize("row", ROWS, ids=[r["path"] for r in ROWS])
def test_stream_final_equals_transcribe_on_each_sample(rec, row):
    path = SAMPLES / row["path"]
    info = media.probe(path)
    audio = media.read_audio(path, info.start)
    frames = list(media.iter_video(path, start=info.start))
    expected = rec.transcribe(path)
    results = feed(rec.create_stream(), audio, frames, chunks=(640, 1600, 3200))
    done = finals(results)
    assert [r.task for r in done] == [expected.task] * len(done)
    assert " ".join(r.text for r in done) == expected.text
    assert all(r.start < r.end for r in results)


def test_partials_come_before_the_final_and_grow(rec):
    audio = media.read_audio(SAMPLES / ROWS[0]["path"])
    results = feed(rec.create_stream(task="asr", stream_options=StreamOptions(partial_every=0.5)), audio)
    partials = [r for r in results if not r.final]
    assert partials and results[-1].final
    assert all(a.end < b.end for a, b in zip(partials, partials[1:]))
    assert all(p.start == results[-1].start and p.end <= results[-1].end for p in partials)


def _utterances(pause: float) -> tuple[np.ndarray, list[str]]:
    """The three sample clips' audio, one after another with `pause` seconds of faint noise between."""
    return joined_with_pauses([SAMPLES / row["path"] for row in ROWS], pause), [row["text"] for row in ROWS]


def test_several_utterances_match_transcribe(rec, tmp_path):
    audio, texts = _utterances(1.5)
    whole = rec.transcribe(write_wav(tmp_path / "three.wav", audio), task="asr")
    results = feed(rec.create_stream(task="asr"), audio, chunks=(320, 1600, 4000))
    done = finals(results)
    assert len(done) == len(texts)  # one final per utterance, cut in the pauses
    reference = " ".join(texts)
    streamed = " ".join(r.text for r in done)
    assert corpus_wer([(reference, streamed)])[0] <= corpus_wer([(reference, whole.text)])[0] + 0.01


def test_no_sample_lost_or_repeated_at_chunk_borders(rec):
    audio, _ = _utterances(2.5)
    seen = []
    stream = spy_on(rec.create_stream(task="asr", stream_options=StreamOptions(partial_every=0)), seen)
    results = feed(stream, audio, chunks=(1, 7, 639, 641, 5000), seed=3)
    assert stream.samples_received == len(audio)
    spans = stream.spans
    assert spans[0][0] == 0 and spans[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous: no gap, no overlap
    assert sum(e - s for s, e, _ in spans) == len(audio)
    assert stream.silent_samples == sum(e - s for s, e, speech in spans if not speech)
    decoded = [(s, e) for s, e, speech in spans if speech]
    assert [r.samples for r in results if r.final] == decoded and len(decoded) == 3
    for (s, e), got in zip(decoded, seen):  # what reached the model is exactly the input's samples
        np.testing.assert_array_equal(got, audio[s:e])


def test_resampled_input_gives_the_same_utterances(rec):
    audio, texts = _utterances(1.5)
    at_48k = np.interp(np.arange(len(audio) * 3) / 3, np.arange(len(audio)), audio).astype(np.float32)
    stream = rec.create_stream(task="asr")
    done = finals(feed(stream, at_48k, chunks=(960, 4800), rate=48000))
    assert len(done) == len(texts)
    assert abs(stream.samples_received - len(audio)) <= 16  # the resampler's edge, not whole chunks


def test_silence_gives_no_result_and_bounded_memory(rec):
    stream = rec.create_stream()
    results = feed(stream, np.zeros(60 * SAMPLE_RATE, np.float32), chunks=(16000,))
    assert results == [] and stream.spans == [(0, 60 * SAMPLE_RATE, False)]
    assert sum(len(a) for a in stream._audio) == 0


def test_bad_use_is_a_clear_error(rec):
    stream = rec.create_stream()
    with pytest.raises(UsageError, match="mono"):
        stream.accept_waveform(16000, np.zeros((2, 100), np.float32))
    stream.accept_waveform(8000, np.zeros(100, np.float32))
    with pytest.raises(UsageError, match="sample rate"):
        stream.accept_waveform(16000, np.zeros(100, np.float32))
    stream.input_finished()
    with pytest.raises(UsageError, match="finished"):
        stream.accept_waveform(8000, np.zeros(100, np.float32))
    with pytest.raises(UsageError, match="audio"):
        rec.create_stream(task="vsr")


def test_final_reuses_the_decode_made_when_the_pause_began(rec):
    audio, texts = _utterances(1.5)
    calls = []
    stream = spy_on(rec.create_stream(task="asr", stream_options=StreamOptions(partial_every=100.0)), calls)
    results = feed(stream, audio, chunks=(640,))
    done = finals(results)
    assert len(done) == 3 and len(calls) == 3  # one model run per utterance: the early one
    early = [r for r in results if not r.final]
    assert [(r.samples, r.text) for r in early] == [(r.samples, r.text) for r in done]
    for r in done:  # the speech ends inside the utterance, `padding` before its end
        assert r.start < r.speech_end <= r.end and r.end - r.speech_end <= StreamOptions().padding + 0.04
