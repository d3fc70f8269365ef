"""The fault suite: hostile and damaged media through `smop-edge transcribe` with the demo bundle. Every
case ends in its documented exit code with a one-line message (or a result with a warning), never a
traceback, and writes nothing but its output. The longer seeded mutation fuzz is `scripts/fuzz.py`."""

import json

import numpy as np
import pytest

from conftest import astronaut_clip, tone_bursts, write_wav
from smop_edge.apps.cli import main
from smop_edge.runtime import DEMO_BUNDLE
from smop_edge.runtime.media import write_video


def _frames(n: int, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return list(rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8))


def _flipped(path, out):
    data = bytearray(path.read_bytes())
    for k in range(len(data) // 3, len(data) // 3 + 2000, 7):
        data[k] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    noise = (0.1 * np.random.default_rng(1).standard_normal(32000)).astype(np.float32)
    whole = write_video(root / "whole.mkv", _frames(50), audio=noise)
    face, _ = astronaut_clip(25, size=256)
    cases = {
        "far_future": write_video(root / "far.mkv", _frames(25), times=[i * 0.04 for i in range(24)] + [4000.0]),
        "flipped": _flipped(whole, root / "flipped.mkv"),
        "truncated": root / "truncated.mkv",
        "text_as_wav": root / "notes.wav",
        "garbage": root / "garbage.mp4",
        "video_shorter": write_video(root / "short_video.mp4", face, audio=tone_bursts(3.0)),
        "silent_video": write_video(root / "silent.mp4", face, audio=np.zeros(16000, np.float32)),
        "huge_dims": write_video(root / "huge.mp4", _frames(2, 2048)),
    }
    cases["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    sample = bytearray((DEMO_BUNDLE.parent / "samples" / "sample-2.mp4").read_bytes())
    # the first byte of the video track's `minf` box type (the one before its mp4v sample entry), as
    # scripts/fuzz.py once hit it: ffmpeg then finds no decoder for the stream
    sample[sample.rfind(b"minf", 0, sample.find(b"mp4v"))] = 241
    cases["no_decoder"] = root / "no_decoder.mp4"
    cases["no_decoder"].write_bytes(bytes(sample))
    cases["text_as_wav"].write_text("RIFF? no: plain text\n" * 50)
    cases["garbage"].write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return cases


@pytest.mark.parametrize("case, code, message", [
    ("far_future", 3, "corrupt timestamps"),
    ("flipped", 3, "cannot decode the"),
    ("text_as_wav", 3, "not a media file ffmpeg understands"),
    ("garbage", 3, "not a media file ffmpeg understands"),
    ("no_decoder", 3, "its video stream has no decoder ffmpeg knows"),
    ("huge_dims", 5, "(audio: no, video: no) cannot feed"),  # 2048 x 2048 noise: no face, no audio
])
def test_hostile_media_end_in_one_line_and_the_documented_code(hostile, case, code, message, capsys, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["transcribe", str(hostile[case]), "--quiet"]) == code
    out, err = capsys.readouterr()
    assert message in err and err.count("\n") == 1 and err.startswith("smop-edge: error:"), err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("case, warning", [
    ("truncated", "is it truncated?"),
    ("video_shorter", "the video ends before the audio: 1.0-3.0 s transcribed from the audio alone"),
    ("silent_video", None),
])
def test_damaged_but_readable_media_are_transcribed_with_a_warning(hostile, case, warning, capsys):
    assert main(["transcribe", str(hostile[case]), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    if warning:
        assert any(warning in w for w in result["warnings"]), result["warnings"]
    if case == "video_shorter":  # the audio after the video is not dropped: an ASR segment covers it
        assert result["task"] == "avsr" and abs(result["duration"] - 3.0) < 0.05
        assert [s["task"] for s in result["segments"]][-1] == "asr" and result["segments"][-1]["end"] > 2.9
