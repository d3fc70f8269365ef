"""`smop-edge transcribe` end to end on media files with a tiny bundle (random weights: the text is
meaningless, but the three backends must agree token for token)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import astronaut_clip, tone_bursts, write_wav
from smop_edge.apps.cli import main
from smop_edge.runtime.media import write_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    frames, _ = astronaut_clip(40, size=256)
    audio = tone_bursts(40 / 25)
    noise = list(np.random.default_rng(0).integers(0, 255, (40, 96, 128, 3), dtype=np.uint8))
    rois = [np.full((96, 96, 3), 100 + i, np.uint8) for i in range(40)]
    return {
        "face": write_video(root / "face.mp4", frames, 25, audio),
        "noface": write_video(root / "noface.mp4", noise, 25, audio),
        "mute_noface": write_video(root / "mute_noface.mp4", noise, 25),
        "mute_face": write_video(root / "mute_face.mp4", frames, 25),
        "roi": write_video(root / "roi.mp4", rois, 25, audio),
        "wav": write_wav(root / "speech.wav", tone_bursts(1.5)),
        "wav8k": write_wav(root / "speech8k.wav", tone_bursts(1.5, rate=8000), 8000, channels=2),
        "silence": write_wav(root / "silence.wav", np.zeros(16000)),
        "corrupt": _corrupt(root / "corrupt.mp4"),
        "zero": _empty(root / "zero.mp4"),
    }


def _corrupt(path):
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_video_with_a_face_runs_avsr_and_the_backends_agree(capsys, clips, dedr_bundle, make_checkpoint,
                                                              base_tokenizer):
    results = {}
    for backend in ("onnxruntime", "openvino"):
        code, out, err = run(capsys, "transcribe", clips["face"], "--bundle", dedr_bundle, "--backend", backend,
                             "--json", "--max-new-tokens", "6")
        assert code == 0, err
        results[backend] = json.loads(out)
    ckpt, _ = make_checkpoint("tiny-dedr")
    code, out, err = run(capsys, "transcribe", clips["face"], "--backend", "torch", "--checkpoint", ckpt,
                         "--tokenizer", base_tokenizer, "--json", "--max-new-tokens", "6")
    assert code == 0, err
    results["torch"] = json.loads(out)
    assert {r["task"] for r in results.values()} == {"avsr"}
    assert results["onnxruntime"]["frames_with_face"] == 40
    assert results["onnxruntime"]["text"] == results["openvino"]["text"] == results["torch"]["text"]
    r = results["onnxruntime"]
    assert set(r["timings_ms"]) >= {"media_decode", "lip_crop", "features", "audio_encoder", "video_encoder",
                                    "projector", "decoder"}
    assert r["real_time_factor"] > 0 and r["segments"][0]["start"] == 0.0 and abs(r["duration"] - 1.6) < 0.05


def test_task_fallbacks(capsys, clips, dedr_bundle):
    code, out, err = run(capsys, "transcribe", clips["noface"], "--bundle", dedr_bundle, "--json",
                         "--max-new-tokens", "3")
    assert code == 0 and json.loads(out)["task"] == "asr" and "no face found" in err
    code, out, _ = run(capsys, "transcribe", clips["mute_face"], "--bundle", dedr_bundle, "--json",
                       "--max-new-tokens", "3")
    assert code == 0 and json.loads(out)["task"] == "vsr"
    code, out, _ = run(capsys, "transcribe", clips["roi"], "--roi", "--bundle", dedr_bundle, "--json",
                       "--max-new-tokens", "3")
    assert code == 0 and json.loads(out)["task"] == "avsr"
    for key in ("wav", "wav8k"):
        code, out, _ = run(capsys, "transcribe", clips[key], "--bundle", dedr_bundle, "--json", "--max-new-tokens", "3")
        assert code == 0 and json.loads(out)["task"] == "asr"
    code, out, err = run(capsys, "transcribe", clips["silence"], "--bundle", dedr_bundle, "--json")
    assert code == 0 and json.loads(out)["text"] == "" and "silence" in err


def test_subtitle_formats(capsys, clips, dedr_bundle):
    code, out, _ = run(capsys, "transcribe", clips["wav"], "--bundle", dedr_bundle, "--format", "srt",
                       "--max-new-tokens", "3")
    assert code == 0 and out.startswith("1\n00:00:00,000 --> 00:00:01,500\n")
    code, out, _ = run(capsys, "transcribe", clips["wav"], "--bundle", dedr_bundle, "--format", "vtt",
                       "--max-new-tokens", "3")
    assert code == 0 and out.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n")


@pytest.mark.parametrize("case,code,message", [
    ("missing", 3, "file not found"), ("zero", 3, "empty file"), ("corrupt", 3, "cannot read"),
    ("mute_noface", 5, "cannot feed"), ("vsr_on_audio", 5, "needs video"), ("no_bundle", 4, "not a smop-edge bundle"),
    ("tampered", 4, "sha256 mismatch"),
])
def test_bad_inputs_end_with_one_line_and_the_right_exit_code(capsys, tmp_path, clips, dedr_bundle, case, code,
                                                              message):
    import shutil

    bundle, media = dedr_bundle, clips.get(case, clips["wav"])
    extra = []
    if case == "missing":
        media = tmp_path / "nope.mp4"
    elif case == "vsr_on_audio":
        extra = ["--task", "vsr"]
    elif case == "no_bundle":
        bundle = tmp_path
    elif case == "tampered":
        bundle = tmp_path / "b"
        shutil.copytree(dedr_bundle, bundle)
        with open(bundle / "projector.onnx", "ab") as f:
            f.write(b"\x00")
    got, _, err = run(capsys, "transcribe", media, "--bundle", bundle, *extra)
    assert got == code and message in err
    assert err.strip().splitlines()[-1].startswith("smop-edge: error:") and "Traceback" not in err


def test_transcribe_works_with_torch_unimportable(clips, dedr_bundle):
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from smop_edge.apps.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "transcribe", str(clips["face"]), "--bundle", str(dedr_bundle),
                           "--json", "--max-new-tokens", "3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["task"] == "avsr"


def test_crop_writes_crops_and_a_preview(capsys, tmp_path, clips):
    from smop_edge.runtime.media import iter_video, probe

    out, overlay = tmp_path / "crops.mp4", tmp_path / "overlay.mp4"
    code, text, err = run(capsys, "crop", clips["face"], "--out", out, "--overlay", overlay)
    assert code == 0, err
    assert "face found in 40/40 frames" in text
    crops = list(iter_video(out))
    assert len(crops) == 40 and crops[0].shape == (96, 96, 3)
    assert probe(overlay).video_size == (256, 256)
    code, _, err = run(capsys, "crop", clips["noface"], "--out", tmp_path / "n.mp4")
    assert code == 5 and "no face found" in err


def test_long_audio_is_split_into_timestamped_segments(capsys, tmp_path, dedr_bundle):
    path = write_wav(tmp_path / "long.wav", tone_bursts(30.0))
    code, out, err = run(capsys, "transcribe", path, "--bundle", dedr_bundle, "--json", "--max-new-tokens", "2")
    assert code == 0, err
    result = json.loads(out)
    spans = [(s["start"], s["end"]) for s in result["segments"]]
    assert len(spans) == 2 and spans[0][0] == 0.0 and abs(spans[-1][1] - 30.0) < 0.01
    assert all(b - a <= 24.0 for a, b in spans) and spans[0][1] == spans[1][0]


def test_progress_bar_on_a_terminal_only(monkeypatch, clips, dedr_bundle):
    import io

    from smop_edge.runtime.recognizer import Recognizer
    from smop_edge.runtime.transcribe import progress_bar, transcribe_media

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    rec = Recognizer.from_bundle(dedr_bundle)
    from smop_edge.runtime.decoding import DecodingOptions

    transcribe_media(rec, clips["face"], options=DecodingOptions(max_new_tokens=2), progress=progress_bar(True))
    shown = terminal.getvalue()
    assert "lip crop" in shown and "segments [" in shown and shown.endswith("1/1\n")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(True) is None  # not a terminal
    assert progress_bar(False) is None


def test_segments_without_the_face_are_read_from_the_audio(capsys, tmp_path, dedr_bundle):
    """A 36 s AVSR video whose speaker leaves the picture after 12 s: the segments without the face fall
    back to ASR (marked, with a warning) instead of reading lips interpolated from where the face was."""
    face, _ = astronaut_clip(300, size=256)
    noise = list(np.random.default_rng(0).integers(0, 255, (600, 256, 256, 3), dtype=np.uint8))
    path = write_video(tmp_path / "leaves.mp4", face + noise, 25, tone_bursts(36.0))
    code, out, _ = run(capsys, "transcribe", path, "--bundle", dedr_bundle, "--json", "--max-new-tokens", "2")
    result = json.loads(out)
    assert code == 0 and result["task"] == "avsr" and len(result["segments"]) >= 2
    first, *rest = result["segments"]
    assert first["task"] is None and first["end"] > 11.0  # with the face: the file's task
    assert all(s["task"] == "asr" for s in rest if s["start"] >= 12.0)
    assert any("the speaker's face is missing for most of" in w and "read from the audio alone" in w
               for w in result["warnings"])


def test_a_longer_video_needs_no_more_memory(tmp_path, dedr_bundle, monkeypatch):
    """Audio is read as it is needed and crops are made and dropped segment by segment: with segments of
    at most 4 s, transcribing 36 s of a talking face peaks no higher than 12 s does (traced allocations,
    numpy's included), where holding the audio, every crop and their float copies (the earlier design)
    grows by about 0.2 MB a frame: + 120 MB here."""
    import itertools
    import tracemalloc

    from smop_edge.runtime import DecodingOptions, load_recognizer
    from smop_edge.runtime import transcribe as module

    monkeypatch.setattr(module, "MAX_SEGMENT_SECONDS", 4.0)
    face, _ = astronaut_clip(50, size=256)
    rec = load_recognizer(dedr_bundle)
    peaks = {}
    for seconds in (12, 36):
        path = write_video(tmp_path / f"talk{seconds}.mp4", itertools.islice(itertools.cycle(face), 25 * seconds),
                           25, tone_bursts(float(seconds)))
        tracemalloc.start()
        result = module.transcribe_media(rec, path, options=DecodingOptions(max_new_tokens=2))
        peaks[seconds] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        assert result.task == "avsr" and len(result.segments) >= seconds / 4
    assert peaks[36] < peaks[12] + 10, peaks  # MB


def test_openvino_keeps_what_it_compiled_for_the_next_start(tmp_path, monkeypatch):
    """A bundle's graphs on OpenVINO are compiled once: the next process loads the compiled blob from
    $SMOP_EDGE_CACHE (keyed by the graph's content), with the same outputs."""
    import numpy as np

    from smop_edge.runtime import DEMO_BUNDLE
    from smop_edge.runtime.sessions import open_session

    monkeypatch.setenv("SMOP_EDGE_CACHE", str(tmp_path))
    graph = DEMO_BUNDLE / "projector.onnx"
    first = open_session(graph, backend="openvino", threads=1)
    blobs = list((tmp_path / "openvino").glob("*/*.blob"))  # a folder per compile setting
    assert len(blobs) == 1
    feeds = {n: np.random.default_rng(0).standard_normal((1, 5, 384 if "audio" in n else 128), np.float32)
             for n in first.input_names}
    again = open_session(graph, backend="openvino", threads=1)
    assert list((tmp_path / "openvino").glob("*/*.blob")) == blobs  # loaded, not compiled and written again
    want, got = first.run(feeds), again.run(feeds)
    assert set(want) == set(got) == set(first.output_names)
    for name in want:
        np.testing.assert_array_equal(want[name], got[name])
