"""The live engine without devices: media files played as sources (fast, headless) through the stream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import joined_with_pauses, write_wav
from smop_edge.runtime import DEMO_BUNDLE, StreamOptions, load_recognizer, media
from smop_edge.runtime import features
from smop_edge.runtime.features import SAMPLE_RATE
from smop_edge.runtime.scoring import edit_distance, words
from smop_edge.runtime.live import FileSource, LiveEngine, LiveOptions, LocalAgreement, MicrophoneSource

SAMPLES = DEMO_BUNDLE.parent / "samples"
ROWS = [json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def rec():
    return load_recognizer()


@pytest.fixture(scope="module")
def three_utterances(tmp_path_factory) -> tuple:
    """The sample clips' audio one after another with 1.5 s of faint noise between, as a wav."""
    audio = joined_with_pauses([SAMPLES / row["path"] for row in ROWS], 1.5)
    return write_wav(tmp_path_factory.mktemp("live") / "three.wav", audio), audio


def run(rec, source, **kwargs):
    events = []
    summary = LiveEngine(rec, [source], on_event=events.append, **kwargs).run()
    return events, summary


def finals(events) -> list:
    return [e for e in events if e.type == "final"]


def assert_nothing_lost(summary, samples: int) -> None:
    assert summary.samples_in == samples
    assert summary.samples_in == summary.samples_decoded + summary.samples_silent


@pytest.mark.parametrize("row", ROWS, ids=[r["path"] for r in ROWS])
def test_file_source_finals_equal_transcribe(rec, row):
    path = SAMPLES / row["path"]
    expected = rec.transcribe(path)
    events, summary = run(rec, FileSource(path, speed=20))
    done = finals(events)
    assert " ".join(e.text for e in done) == expected.text
    assert {e.task for e in done} == {expected.task}
    assert_nothing_lost(summary, len(media.read_audio(path)))
    assert summary.frames_in > 0 and all(e.latency_ms >= 0 for e in done)


def test_several_utterances_equal_the_stream(rec, three_utterances):
    path, audio = three_utterances
    stream = rec.create_stream()
    results = []
    for start in range(0, len(audio), 640):
        stream.accept_waveform(SAMPLE_RATE, audio[start:start + 640])
        results += stream.decode()
    stream.input_finished()
    expected = [(r.text, r.start, r.end) for r in results + stream.decode() if r.final]
    events, summary = run(rec, FileSource(path, speed=5))
    assert [(e.text, e.start, e.end) for e in finals(events)] == expected and len(expected) == 3
    assert_nothing_lost(summary, len(audio))
    kept = 2 * StreamOptions().padding  # silence kept around each utterance; the rest of both pauses is skipped
    assert summary.samples_silent > 2 * (1.5 - kept) * SAMPLE_RATE and summary.finals == 3
    partials = [e for e in events if e.type == "partial"]
    assert partials and all(e.committed.split() == e.text.split()[:len(e.committed.split())] for e in partials)


def test_a_slow_machine_says_so_and_degrades_in_order(rec, tmp_path):
    class Slow:  # the demo model as a machine four times too slow would run it
        tasks = rec.tasks

        @staticmethod
        def transcribe(audio, frames, task, options):
            time.sleep(0.25)
            return rec.transcribe(audio, frames, task, options)

    clips = [SAMPLES / row["path"] for row in ROWS]  # back to back: one utterance of 6 s, face throughout
    frames = [f for c in clips for f in media.iter_video(c)]
    audio = np.concatenate([features.align_audio_to_video(media.read_audio(c), sum(1 for _ in media.iter_video(c)))
                            for c in clips])
    path = media.write_video(tmp_path / "long.mp4", frames, audio=audio)
    events, summary = run(Slow(), FileSource(path, speed=4), stream_options=StreamOptions(partial_every=0.2),
                          live=LiveOptions(behind_after=0.3, degrade=True))
    states = [e.message for e in events if e.state == "behind"]
    assert len(states) >= 2 and "partials every 0.6 s" in states[0] and "ASR without lips" in states[1]
    lipless = next(i for i, e in enumerate(events) if "ASR without lips" in e.message)
    after = next((i for i, e in enumerate(events[lipless:], lipless) if e.type != "state"), None)
    assert after is not None, "no result after the switch to ASR"
    # the next result was decoded without lips, unless decoding caught up (lips back) before it: on a loaded
    # machine the last final can come after a "caught-up" (seen once in a full suite run)
    caught_up = any(e.state == "caught-up" for e in events[lipless:after])
    assert events[after].task == "asr" or (caught_up and events[after].task == "avsr")
    assert_nothing_lost(summary, len(media.read_audio(path)))
    assert summary.behind >= 1


def test_local_agreement_commits_what_two_partials_agree_on():
    agreement = LocalAgreement()
    assert agreement.update("five w") == ("", "five w")
    assert agreement.update("five w b") == ("five w", "b")
    assert agreement.update("five v b nine") == ("five w", "v b nine")  # committed words stay
    assert agreement.update("five w b nine q") == ("five w", "b nine q")
    assert agreement.update("five w b nine q three") == ("five w b nine q", "three")
    agreement.reset()
    assert agreement.update("zero") == ("", "zero")


@pytest.fixture
def virtual_microphone(monkeypatch):
    """A PulseAudio null sink whose monitor is the microphone PortAudio opens (PULSE_SOURCE, so the
    machine's default source is left alone); skipped without PulseAudio (Debian: pulseaudio)."""
    if not all(shutil.which(tool) for tool in ("pulseaudio", "pactl", "paplay")):
        pytest.skip("PulseAudio is not installed (Debian: pulseaudio, pulseaudio-utils)")
    started = subprocess.run(["pulseaudio", "--check"]).returncode != 0
    if started and subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1"], capture_output=True).returncode:
        pytest.skip("PulseAudio does not start here")
    sink = f"smop_edge_test_{os.getpid()}"
    module = subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={sink}"], capture_output=True,
                            text=True)
    if module.returncode:
        pytest.skip(f"no PulseAudio null sink: {module.stderr.strip()}")
    monkeypatch.setenv("PULSE_SOURCE", f"{sink}.monitor")
    sd = pytest.importorskip("sounddevice")
    sd._terminate(), sd._initialize()  # PortAudio lists devices once: again, now that PulseAudio runs
    yield sink
    subprocess.run(["pactl", "unload-module", module.stdout.strip()])
    if started:
        subprocess.run(["pulseaudio", "--kill"])


def test_the_microphone_path_through_a_virtual_microphone(rec, virtual_microphone, tmp_path):
    speech = media.read_audio(SAMPLES / ROWS[0]["path"])
    quiet = np.zeros(SAMPLE_RATE, np.float32)
    played = write_wav(tmp_path / "said.wav", np.concatenate([quiet, speech, quiet, quiet]))
    events = []
    engine = LiveEngine(rec, [MicrophoneSource()], on_event=events.append).start()
    time.sleep(0.5)
    subprocess.run(["paplay", f"--device={virtual_microphone}", str(played)], check=True)
    engine.stop()
    summary = engine.join(30)
    heard = [e.text for e in finals(events)]
    # the same words as the file, give or take one: PulseAudio hands back int16 samples, and the utterance's
    # edges are the VAD's, not the file's (the model's E-set letters flip on less)
    assert len(heard) == 1 and edit_distance(words(rec.transcribe(speech, None, "asr").text), words(heard[0])) <= 1
    assert summary.samples_in > len(played.read_bytes()) // 2 - SAMPLE_RATE
    assert summary.samples_in == summary.samples_decoded + summary.samples_silent


def test_the_command_writes_one_json_object_per_event(rec, capsys, tmp_path):
    from smop_edge.apps.cli import main

    path, srt, txt = SAMPLES / ROWS[0]["path"], tmp_path / "out.srt", tmp_path / "out.txt"
    assert main(["live", "--input", str(path), "--speed", "20", "--json", "--srt", str(srt), "--txt", str(txt)]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    done = [e for e in events if e["type"] == "final"]
    assert {e["type"] for e in events} <= {"partial", "final", "state"} and len(done) == 1
    assert all({"text", "start", "end", "task"} <= e.keys() for e in events if e["type"] != "state")
    assert done[0]["text"] == rec.transcribe(path).text and done[0]["latency_ms"] >= 0 and done[0]["end"] > done[0]["start"]
    assert txt.read_text() == done[0]["text"] + "\n" and done[0]["text"] in srt.read_text()
    assert "1 finals" in err and "decoded" in err


def test_the_command_says_what_is_wrong(capsys, tmp_path):
    from smop_edge.apps.cli import main

    assert main(["live", "--input", str(tmp_path / "missing.mp4")]) == 3
    assert "not found" in capsys.readouterr().err
    assert main(["live", "--input", str(SAMPLES / ROWS[0]["path"]), "--mic", "1"]) == 2
    assert main(["live", "--input", str(SAMPLES / ROWS[0]["path"]), "--speed", "-1"]) == 2


def test_a_looped_file_keeps_its_frames_beside_its_audio():
    from smop_edge.runtime.live import AudioChunk

    items = []
    source = FileSource(SAMPLES / ROWS[1]["path"], speed=0, loops=3)
    source.run(items.append, threading.Event(), time.monotonic())
    heard = 0.0  # input time the audio put so far reaches
    for item in items:
        if isinstance(item, AudioChunk):
            assert abs(item.time - heard) < 1e-6  # contiguous across loops
            heard = item.time + len(item.samples) / item.rate
        else:  # a frame arrives with the chunk that reaches its time, never a whole loop early
            assert heard - 0.04 <= item.time < heard + 0.04 + 1e-6
    assert abs(heard - source.seconds) < 1e-6
    assert sum(not isinstance(i, AudioChunk) for i in items) == 3 * len(list(media.iter_video(source.path)))
