"""The desktop captioning window (`smop-edge live --gui`; PySide6, the `[app]` extra): the camera preview
with the lip crop's outline and the 88x88 crop as an inset, captions (finals black, the partial grey),
state and latency, microphone / camera / file / bundle pickers, start / stop, font size, an always-on-top
caption strip and saving the transcript (txt / srt / vtt). The model runs in the live engine's worker
thread; its events reach the window through Qt signals, so the window never waits for it.

Keys: Space start / stop, Ctrl+S save, Ctrl+T caption strip, Ctrl++ / Ctrl+- font size, Ctrl+Q quit."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QMainWindow,
                               QPushButton, QSpinBox, QTextEdit, QVBoxLayout, QWidget)

from smop_edge.runtime.live import LiveEngine, LiveEvent
from smop_edge.runtime.stream import StreamOptions

CROP = 88  # the model's view: the centre of the 96x96 crop


class _Bridge(QObject):
    """Carries the engine's callbacks (in its worker thread) into the window's thread."""

    event = Signal(object)
    frame = Signal(object, object, object)


def _pixmap(image: np.ndarray) -> QPixmap:
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    return QPixmap.fromImage(QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


class CaptionStrip(QWidget):
    """A compact caption line that stays on top of other windows."""

    def __init__(self) -> None:
        super().__init__(None, Qt.WindowType.WindowStaysOnTopHint | Qt.WindowType.Tool)
        self.setWindowTitle("captions")
        self.label = QLabel("")
        self.label.setStyleSheet("font-size: 22px; padding: 6px;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        self.resize(720, 60)


class CaptionWindow(QMainWindow):
    """`open_recognizer(bundle)` gives a recognizer; `make_sources(mic, camera, file)` the engine's sources."""

    def __init__(self, open_recognizer: Callable, make_sources: Callable, microphones: list[tuple[str, object]],
                 cameras: list[int | str], file: str | None = None, bundle: str | None = None,
                 stream_options: StreamOptions | None = None) -> None:
        super().__init__()
        self.setWindowTitle("smop-edge live captions")
        self._open_recognizer, self._make_sources = open_recognizer, make_sources
        self.stream_options = stream_options or StreamOptions(padding=0.15, max_leading_silence=0.15)
        self.file, self.bundle = file, bundle
        self.engine: LiveEngine | None = None
        self.finals: list[LiveEvent] = []
        self.partial = ""
        self.latency: float | None = None
        self._bridge = _Bridge()
        self._bridge.event.connect(self.on_event)
        self._bridge.frame.connect(self.on_frame)

        self.preview = QLabel("no camera")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(320, 240)
        self.captions = QTextEdit(readOnly=True)
        self.status = QLabel("stopped")
        self.mic = QComboBox()
        for name, device in microphones:
            self.mic.addItem(name, device)
        self.camera = QComboBox()
        self.camera.addItem("no camera", None)
        for index in cameras:
            self.camera.addItem(f"camera {index}", index)
        if cameras:
            self.camera.setCurrentIndex(1)
        self.file_button = QPushButton("File…")
        self.file_button.clicked.connect(self.choose_file)
        self.bundle_button = QPushButton("Bundle…")
        self.bundle_button.clicked.connect(self.choose_bundle)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.toggle)
        self.font_size = QSpinBox(minimum=8, maximum=72, value=16, suffix=" pt")
        self.font_size.valueChanged.connect(self._render)
        self.strip = CaptionStrip()
        self.on_top = QCheckBox("caption strip")
        self.on_top.toggled.connect(self.strip.setVisible)
        save = QPushButton("Save…")
        save.clicked.connect(self.choose_save)

        pickers = QHBoxLayout()
        for widget in (QLabel("mic"), self.mic, self.camera, self.file_button, self.bundle_button):
            pickers.addWidget(widget)
        controls = QHBoxLayout()
        for widget in (self.start_button, QLabel("font"), self.font_size, self.on_top, save, self.status):
            controls.addWidget(widget)
        layout = QVBoxLayout()
        layout.addLayout(pickers)
        layout.addWidget(self.preview, 2)
        layout.addWidget(self.captions, 1)
        layout.addLayout(controls)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)
        for keys, action in (("Space", self.toggle), ("Ctrl+S", self.choose_save),
                             ("Ctrl+T", self.on_top.toggle), ("Ctrl++", lambda: self._font(2)),
                             ("Ctrl+-", lambda: self._font(-2)), ("Ctrl+Q", self.close)):
            QShortcut(QKeySequence(keys), self, activated=action)
        self._source_label()
        self._render()

    # ---- control ----
    def toggle(self) -> None:
        if self.engine is not None:
            self.stop()
        else:
            self.start()

    def start(self) -> None:
        """Open the chosen sources and start the engine; errors are shown in the status line."""
        try:
            recognizer = self._open_recognizer(self.bundle)
            sources = self._make_sources(self.mic.currentData(), self.camera.currentData(), self.file)
            self.engine = LiveEngine(recognizer, sources, stream_options=self.stream_options,
                                     on_event=self._bridge.event.emit, on_frame=self._bridge.frame.emit)
            self.engine.start()
        except Exception as exc:  # a missing device or file: say so, keep the window
            self.engine = None
            self.status.setText(f"error: {exc}")
            return
        self.finals, self.partial = [], ""
        self.start_button.setText("Stop")
        self._render()

    def stop(self) -> None:
        """Stop capturing; the engine still decodes what it has and then says `stopped`."""
        if self.engine is not None:
            self.engine.stop()
            self.status.setText("stopping…")

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Caption a media file")
        self.file = path or None
        self._source_label()

    def choose_bundle(self) -> None:
        self.bundle = QFileDialog.getExistingDirectory(self, "Bundle directory") or None
        self.bundle_button.setText(Path(self.bundle).name if self.bundle else "Bundle…")

    def choose_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the transcript", "captions.srt",
                                              "Subtitles (*.srt *.vtt);;Text (*.txt)")
        if path:
            self.save(path)

    def save(self, path: str | Path) -> None:
        """The finals as txt, srt or vtt (by the file's extension)."""
        from .commands.live import save_finals

        save_finals(self.finals, path)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self.engine is not None:
            self.engine.stop()
            self.engine.join(5)
        self.strip.close()
        super().closeEvent(event)

    # ---- from the engine ----
    def on_event(self, event: LiveEvent) -> None:
        if event.type == "final":
            self.finals.append(event)
            self.partial, self.latency = "", event.latency_ms
        elif event.type == "partial":
            self.partial = event.text
        elif event.state == "stopped":
            self.engine = None
            self.start_button.setText("Start")
        if event.type == "state":
            self.state = event.state
            self.status.setText(f"{event.state}: {event.message}" if event.state in ("behind", "audio-only")
                                else event.state)
        elif event.type == "partial":
            self.status.setText("speech")
        else:
            self.status.setText(f"listening · latency {self.latency:.0f} ms")
        self._render()

    def on_frame(self, image: np.ndarray, crop: np.ndarray | None, transform: np.ndarray | None) -> None:
        if transform is not None:
            from smop_edge.runtime.lip_cropper import draw_crop_box

            image = draw_crop_box(image, transform)
        if crop is not None:  # the 88x88 the model sees, top left
            image = image.copy()
            edge = (crop.shape[0] - CROP) // 2
            inset = crop[edge:edge + CROP, edge:edge + CROP]
            h, w = min(CROP, image.shape[0]), min(CROP, image.shape[1])
            image[:h, :w] = inset[:h, :w]
        self.preview.setPixmap(_pixmap(image).scaled(self.preview.size(), Qt.AspectRatioMode.KeepAspectRatio))

    # ---- display ----
    def _font(self, step: int) -> None:
        self.font_size.setValue(self.font_size.value() + step)

    def _source_label(self) -> None:
        self.file_button.setText(Path(self.file).name if self.file else "File…")
        self.mic.setEnabled(not self.file)
        self.camera.setEnabled(not self.file)

    def _render(self) -> None:
        size = self.font_size.value()
        lines = [f'<p style="color:black">{html.escape(e.text)}</p>' for e in self.finals[-50:] if e.text]
        if self.partial:
            lines.append(f'<p style="color:grey">{html.escape(self.partial)}</p>')
        self.captions.setHtml(f'<div style="font-size:{size}pt">{"".join(lines)}</div>')
        self.captions.verticalScrollBar().setValue(self.captions.verticalScrollBar().maximum())
        self.strip.label.setText(self.partial or (self.finals[-1].text if self.finals else ""))

    def caption_text(self) -> str:
        """What the caption area shows, as plain text."""
        return self.captions.toPlainText()


def run(args, make_sources: Callable, microphones: list, cameras: list[int], stream_options: StreamOptions) -> int:
    """`smop-edge live --gui`: the window with the command line's choices preselected."""
    from .commands.common import open_bundle

    def open_recognizer(bundle):
        args.bundle = bundle
        return open_bundle(args)

    app = QApplication.instance() or QApplication([])
    window = CaptionWindow(open_recognizer, make_sources, microphones, cameras, args.input, args.bundle,
                           stream_options)
    window.resize(800, 720)
    window.show()
    return app.exec()
