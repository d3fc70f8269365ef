"""The Raspberry Pi demo without a Pi: the Pi camera's pipe fed by a stand-in `rpicam-vid` that plays a
clip's frames, the full-screen caption view's layout, the board's facts from a copy of a Pi's sysfs, the
`pi` command from a file, and a service's stop (SIGTERM) that keeps every final."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import joined_with_pauses, write_wav
from smop_edge.apps.board import board_info, decode_throttled
from smop_edge.apps.cli import main
from smop_edge.apps.screen import CaptionScreen
from smop_edge.runtime import DEMO_BUNDLE, load_recognizer, media
from smop_edge.runtime.errors import InputError, UsageError
from smop_edge.runtime.live import FileSource, LibcameraSource, LiveEngine, LiveEvent, camera_source, cameras

SAMPLES = DEMO_BUNDLE.parent / "samples"
ROWS = [json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text().splitlines()]
W, H = 640, 480

# Stands in for Raspberry Pi OS's rpicam-vid: lists one camera, or checks the flags a real one takes and writes a
# clip's frames (scaled to the asked size) as raw I420 at the asked frame rate, then ends like an unplugged camera.
FAKE_RPICAM = textwrap.dedent('''\
    #!{python}
    import sys, time
    import cv2, numpy as np
    from smop_edge.runtime import media
    args = sys.argv[1:]
    if args == ["--list-cameras"]:
        print("Available cameras\\n-----------------\\n0 : imx708 [4608x2592 10-bit RGGB] (/base/soc/i2c0mux)")
        sys.exit(0)
    flag = {{a: b for a, b in zip(args, args[1:]) if a.startswith("--") and not b.startswith("--")}}
    assert "--nopreview" in args and flag["--codec"] == "yuv420" and flag["--output"] == "-", args
    assert flag["--timeout"] == "0" and "--flush" in args, args
    w, h, fps = int(flag["--width"]), int(flag["--height"]), float(flag["--framerate"])
    began = time.monotonic()
    for i, rgb in enumerate(media.iter_video("{clip}")):
        time.sleep(max(0.0, began + i / fps - time.monotonic()))
        sys.stdout.buffer.write(cv2.cvtColor(cv2.resize(rgb, (w, h)), cv2.COLOR_RGB2YUV_I420).tobytes())
        sys.stdout.buffer.flush()
    print("ERROR: camera frontend has timed out!", file=sys.stderr)
    ''')


@pytest.fixture(scope="module")
def rec():
    return load_recognizer()


@pytest.fixture
def fake_rpicam(tmp_path, monkeypatch) -> Path:
    """A `rpicam-vid` on PATH that plays sample-1's frames."""
    program = tmp_path / "bin" / "rpicam-vid"
    program.parent.mkdir()
    program.write_text(FAKE_RPICAM.format(python=sys.executable, clip=SAMPLES / ROWS[0]["path"]))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.environ['PATH']}")
    return program


def test_the_pi_camera_pipe_gives_the_clips_frames(fake_rpicam):
    assert cameras()[0] == "pi"
    source = camera_source("auto")
    assert isinstance(source, LibcameraSource) and (source.width, source.height) == (W, H)
    frames = []
    with pytest.raises(InputError, match="camera frontend has timed out"):  # the clip's end: an unplugged camera
        source.run(frames.append, threading.Event(), time.monotonic())
    want = [cv2_resize(rgb) for rgb in media.iter_video(SAMPLES / ROWS[0]["path"])]
    assert len(frames) == len(want)
    times = np.array([f.time for f in frames])
    assert 0.8 < (times[-1] - times[0]) / ((len(frames) - 1) / 25) < 1.5  # delivered at the camera's pace
    for frame, rgb in zip(frames[::10], want[::10]):
        assert frame.image.shape == (H, W, 3)
        assert np.abs(frame.image.astype(int) - rgb).mean() < 4  # I420's halved chroma, nothing else


def cv2_resize(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (W, H)).astype(int)


def test_captions_from_the_pi_camera_and_a_microphone_stand_in(rec, fake_rpicam):
    """Audio from the file at real-time pace, lips from the Pi camera's pipe: the live engine reads both; a
    camera that fails leaves captions from the audio, with a word on screen, not an error."""
    row = ROWS[0]
    events = []
    engine = LiveEngine(rec, [FileSource(SAMPLES / row["path"], video=False), camera_source("pi")],
                        on_event=events.append)
    summary = engine.start().join(30)
    assert summary is not None and summary.frames_in > 25
    finals = [e for e in events if e.type == "final"]
    assert [e.task for e in finals] == ["avsr"] and finals[0].text
    lost = [e for e in events if e.type == "state" and e.state == "audio-only"]
    assert len(lost) == 1 and "camera frontend has timed out" in lost[0].message


def test_the_pi_camera_refuses_a_width_with_stride_padding():
    with pytest.raises(UsageError, match="multiple of 64"):
        LibcameraSource(width=600, command=["true"])


def test_the_screen_keeps_the_newest_finals_that_fit_and_the_partial_below():
    screen = CaptionScreen(io.StringIO(), size=(20, 5), title="t")
    for i, text in enumerate(["one two three", "a much longer final that wraps over lines", "last"]):
        screen(LiveEvent("final", text, i, i + 1, "avsr", latency_ms=420.0))
    screen(LiveEvent("partial", "open words", 3, 4, "avsr"))
    lines, partial = screen.layout()
    assert len(lines) == 5 and partial == 1
    assert lines[:4] == ["that wraps over", "lines", "last", "open words"]  # the older lines scrolled off
    assert lines[4] == "t | speech | AVSR | "  # cut at the screen's width
    out = screen.out.getvalue()
    assert "\x1b[2mopen words\x1b[0m" in out and out.count("\x1b[H\x1b[2J") == 4  # a redraw per event
    screen(LiveEvent("final", "", 4, 5, "asr", latency_ms=1.0))  # an empty final clears the partial only
    assert screen.layout()[0][-2] == "last" and screen.layout()[1] == 0


def test_the_board_from_a_pis_files(tmp_path):
    root = tmp_path
    for rel, text in {"proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
                      "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "ondemand\n",
                      "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1500000\n",
                      "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "2400000\n",
                      "sys/class/thermal/thermal_zone0/type": "cpu-thermal\n",
                      "sys/class/thermal/thermal_zone0/temp": "83150\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    board = board_info(root)
    assert board.model == "Raspberry Pi 5 Model B Rev 1.0"
    assert (board.mhz_now, board.mhz_max, board.governor, board.celsius) == (1500.0, 2400.0, "ondemand", 83.15)
    assert "1500 of 2400 MHz (ondemand); 83.2 °C" in board.describe()
    assert any("80 °C" in w for w in board.warnings())
    assert board_info(tmp_path / "nothing").celsius is None  # a machine that says nothing


def test_throttling_bits_read_as_words():
    assert decode_throttled(0) == []
    assert decode_throttled(0x50005) == ["under-voltage now", "throttled now", "under-voltage since boot",
                                         "throttled since boot"]


def test_the_pi_command_from_a_file(tmp_path, capsys):
    txt = tmp_path / "captions.txt"
    assert main(["pi", "--input", str(SAMPLES / ROWS[1]["path"]), "--speed", "0", "--view", "lines",
                 "--txt", str(txt)]) == 0
    out = capsys.readouterr().out
    text = txt.read_text().strip()
    assert text and text in out
    assert main(["pi", "--json", "--view", "screen", "--input", str(SAMPLES / ROWS[1]["path"])]) == 2


def test_the_first_run_check(capsys):
    code = main(["pi", "--check", "--input", str(SAMPLES / ROWS[1]["path"])])
    out = capsys.readouterr().out
    assert "board:" in out and "RTF" in out and "AVSR of the 3 sample clips" in out
    assert code == (0 if "\nready" in out else 1)
    assert code == 0 or "problem:" in out


def test_a_service_stop_keeps_every_final(tmp_path):
    """`systemctl stop` sends SIGTERM: the captions so far are in --txt and the command ends as with Ctrl-C."""
    txt, talk = tmp_path / "captions.txt", tmp_path / "talk.wav"
    write_wav(talk, joined_with_pauses([SAMPLES / row["path"] for row in ROWS], 1.0))
    proc = subprocess.Popen([sys.executable, "-m", "smop_edge.apps.cli", "pi", "--input", str(talk), "--loop", "20",
                             "--speed", "2", "--view", "lines", "--txt", str(txt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not txt.exists() or txt.read_text().count("\n") < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    saved = txt.read_text().splitlines()
    assert len(saved) >= 2 and len(saved) == out.count("\n") and "finals" in err
