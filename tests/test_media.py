import numpy as np
import pytest

from conftest import write_wav
from smop_edge.runtime import media
from smop_edge.runtime.errors import InputError


def test_mp4_round_trip_keeps_audio_and_25_fps_frames(tmp_path):
    frames = np.zeros((50, 64, 64, 3), np.uint8)
    for i in range(50):
        frames[i, :, : i + 4] = 255  # bar width encodes the frame index
    audio = np.zeros(32000, np.float32)
    audio[8000:8800] = 0.5 * np.random.default_rng(0).standard_normal(800)  # a click at 0.5 s
    path = media.write_video(tmp_path / "clip.mp4", frames, 25, audio)
    info = media.probe(path)
    assert info.has_audio and info.has_video and info.video_size == (64, 64) and abs(info.duration - 2.0) < 0.1
    back = media.read_audio(path)
    assert abs(len(back) - 32000) < 1100  # AAC pads the last frame
    onset = int(np.argmax(np.abs(back) > 0.1))
    assert abs(onset - 8000) < 40  # samples: the audio keeps its place on the video's time axis
    video = list(media.iter_video(path))
    assert len(video) == 50
    assert [int((f[32, :, 0] > 128).sum()) - 4 for f in video] == list(range(50))


def test_variable_frame_rate_lands_on_the_25_fps_grid(tmp_path):
    rng = np.random.default_rng(0)
    times = [0.0] + sorted(rng.choice(np.arange(1, 2000), 29, replace=False) / 1000)
    frames = np.zeros((30, 64, 64, 3), np.uint8)
    for i in range(30):
        frames[i, :, : 2 * i + 2] = 255
    path = media.write_video(tmp_path / "vfr.mp4", frames, 15, None, times=list(times))
    got = [int(round((f[32, :, 0] > 128).sum() / 2 - 1)) for f in media.iter_video(path)]
    want = [max(i for i, s in enumerate(times) if s <= k / 25 + 1e-9) for k in range(len(got))]
    assert got == want and len(got) >= 50


def test_wav_at_8k_stereo_is_resampled_to_16k_mono(tmp_path):
    t = np.arange(8000) / 8000
    path = write_wav(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 300 * t), 8000, channels=2)
    audio = media.read_audio(path)
    assert audio.dtype == np.float32 and abs(len(audio) - 16000) <= 32
    spectrum = np.abs(np.fft.rfft(audio[1000:15000]))
    assert abs(np.argmax(spectrum) * 16000 / 14000 - 300) < 5


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "directory", "no_audio", "no_video"])
def test_bad_media_raise_input_errors(tmp_path, case):
    path = tmp_path / "x.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    elif case == "directory":
        path.mkdir()
    elif case == "no_audio":
        media.write_video(path, np.zeros((5, 32, 32, 3), np.uint8), 25)
    elif case == "no_video":
        path = write_wav(tmp_path / "x.wav", np.zeros(1600), 16000)
    with pytest.raises(InputError):
        if case == "no_audio":
            media.read_audio(path)
        elif case == "no_video":
            list(media.iter_video(path))
        else:
            media.probe(path)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".avi", ".webm"])
def test_video_containers(tmp_path, suffix):
    frames = np.zeros((25, 64, 64, 3), np.uint8)
    for i in range(25):
        frames[i, :, : 2 * i + 4] = 255
    t = np.arange(16000) / 16000
    path = media.write_video(tmp_path / f"clip{suffix}", frames, 25, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    video = list(media.iter_video(path))
    assert 25 <= len(video) <= 26  # containers may pad the last frame to the (codec-padded) audio length
    assert [int(round(((f[32, :, 0] > 128).sum() - 4) / 2)) for f in video[:25]] == list(range(25))
    audio = media.read_audio(path)
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg"])
def test_audio_files(tmp_path, suffix):
    t = np.arange(24000) / 16000
    path = media.write_audio(tmp_path / f"a{suffix}", (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    info = media.probe(path)
    assert info.has_audio and not info.has_video
    audio = media.read_audio(path)
    assert abs(len(audio) - 24000) < 1600  # codec padding
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 300) < 5
