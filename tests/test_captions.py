"""The desktop captioning window, offscreen (QT_QPA_PLATFORM=offscreen), driven by a file source."""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets", reason="the window needs PySide6 (the [app] extra)")

from PySide6.QtWidgets import QApplication  # noqa: E402

from smop_edge.apps.captions import CaptionWindow  # noqa: E402
from smop_edge.runtime import DEMO_BUNDLE, load_recognizer  # noqa: E402
from smop_edge.runtime.live import FileSource  # noqa: E402

SAMPLE = DEMO_BUNDLE.parent / "samples" / "sample-1.mp4"


@pytest.fixture(scope="module")
def app():
    return QApplication.instance() or QApplication([])


def run_until_stopped(app, window, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while window.engine is not None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()
    assert window.engine is None, "the engine did not stop"


def test_the_window_shows_the_captions_of_a_file(app, tmp_path):
    rec = load_recognizer()
    window = CaptionWindow(lambda bundle: rec, lambda mic, camera, file: [FileSource(file, speed=10)], [], [],
                           file=str(SAMPLE))
    window.show()
    window.start()
    assert window.start_button.text() == "Stop"
    run_until_stopped(app, window)
    expected = rec.transcribe(SAMPLE).text
    assert window.caption_text().strip() == expected and window.strip.label.text() == expected
    assert window.latency is not None and window.latency >= 0 and window.start_button.text() == "Start"
    assert not window.preview.pixmap().isNull()  # the camera preview showed the file's frames
    window.save(tmp_path / "captions.srt")
    window.save(tmp_path / "captions.txt")
    assert expected in (tmp_path / "captions.srt").read_text()
    assert (tmp_path / "captions.txt").read_text() == expected + "\n"
    window.close()


def test_a_missing_device_is_said_in_the_window(app):
    def no_microphone(mic, camera, file):
        from smop_edge.runtime.errors import InputError

        raise InputError("no microphone found")

    window = CaptionWindow(lambda bundle: None, no_microphone, [], [])
    window.start()
    assert window.engine is None and "no microphone" in window.status.text()
    window.close()
