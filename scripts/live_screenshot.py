"""A screenshot of the captioning window (`smop-edge live --gui`) captioning a file, rendered offscreen:
the picture in docs/runtime.md.

    QT_QPA_PLATFORM=offscreen python scripts/live_screenshot.py docs/live-window.png
"""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication

from smop_edge.apps.captions import CaptionWindow
from smop_edge.runtime import DEMO_BUNDLE, load_recognizer
from smop_edge.runtime.live import FileSource


def main(out: str, clip: str = str(DEMO_BUNDLE.parent / "samples" / "sample-1.mp4"), at: float = 2.6) -> int:
    app = QApplication.instance() or QApplication([])
    rec = load_recognizer()
    window = CaptionWindow(lambda bundle: rec, lambda mic, camera, file: [FileSource(file, speed=1.0, loops=2)], [],
                           [], file=clip)
    window.resize(720, 640)
    window.show()
    window.start()
    began = time.monotonic()
    while time.monotonic() - began < 3.2 + at:  # the first loop's final, then the second loop's partial
        app.processEvents()
        time.sleep(0.01)
    window.grab().save(out)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
