"""A full-screen caption view in a terminal: the latest finals, word-wrapped, at the bottom of the screen, the
open utterance's partial below them (dim), and a status line (state, task, latency). On a Raspberry Pi with a
display and no desktop this is the console of the attached screen (the systemd service writes to /dev/tty1,
in a large font); anywhere else, any full-screen terminal. Plain ANSI: no curses, no GUI toolkit."""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections import deque
from typing import TextIO

from smop_edge.runtime.live import LiveEvent

_DIM, _INVERSE, _RESET = "\x1b[2m", "\x1b[7m", "\x1b[0m"
_HOME_CLEAR, _HIDE_CURSOR, _SHOW_CURSOR = "\x1b[H\x1b[2J", "\x1b[?25l", "\x1b[?25h"


class CaptionScreen:
    """Takes live events (`__call__`, as `LiveEngine(on_event=...)`), keeps the finals that fit, and redraws
    the whole screen on each change. `layout()` is the picture as text lines, without escapes."""

    def __init__(self, out: TextIO | None = None, size: tuple[int, int] | None = None, title: str = "") -> None:
        self.out = out or sys.stdout
        self._size = size  # (columns, rows); None: the terminal's, read at each redraw (it may be resized)
        self.title = title
        self.finals: deque[str] = deque(maxlen=200)
        self.partial = ""
        self.state, self.message, self.task = "listening", "", ""
        self.latency_ms: float | None = None
        self._started = False

    def size(self) -> tuple[int, int]:
        if self._size:
            return self._size
        columns, rows = shutil.get_terminal_size((80, 24))
        return max(columns, 20), max(rows, 4)

    def __call__(self, event: LiveEvent) -> None:
        if event.type == "final":
            if event.text:
                self.finals.append(event.text)
            self.partial, self.task, self.latency_ms = "", event.task, event.latency_ms
        elif event.type == "partial":
            self.partial, self.task = event.text, event.task
        elif event.type == "state":
            self.state, self.message = event.state, event.message
        self.draw()

    def status(self) -> str:
        words = [self.title, "speech" if self.partial and self.state == "listening" else self.state]
        if self.task:
            words.append(self.task.upper())
        if self.latency_ms is not None:
            words.append(f"last final {self.latency_ms:.0f} ms after speech")
        if self.message and self.message != self.state:
            words.append(self.message)
        return " | ".join(w for w in words if w)

    def layout(self) -> tuple[list[str], int]:
        """The screen's rows (finals then the partial, bottom-aligned; the status line last) and how many of
        the rows before the status line are the partial's."""
        columns, rows = self.size()
        wrap = textwrap.TextWrapper(width=columns, break_long_words=True)
        partial = wrap.wrap(self.partial) if self.partial else []
        room = rows - 1 - len(partial)
        lines: list[str] = []
        for text in reversed(self.finals):  # newest first, until the screen is full (the oldest shown in part)
            if len(lines) >= room:
                break
            lines[:0] = wrap.wrap(text)
        lines = lines[len(lines) - room:] if room > 0 else []
        body = [""] * (room - len(lines)) + lines + partial
        return body[-(rows - 1):] + [self.status()[:columns]], len(partial)

    def draw(self) -> None:
        lines, partial = self.layout()
        body, status = lines[:-1], lines[-1]
        final_rows = len(body) - partial
        text = [(_HIDE_CURSOR if not self._started else "") + _HOME_CLEAR]
        text += [line + "\n" for line in body[:final_rows]]
        text += [f"{_DIM}{line}{_RESET}\n" for line in body[final_rows:]]
        columns = self.size()[0]
        text.append(f"{_INVERSE}{status.ljust(columns)}{_RESET}")
        self._started = True
        self.out.write("".join(text))
        self.out.flush()

    def close(self) -> None:
        """Leave the terminal usable: cursor back, a new line after the status."""
        if self._started:
            self.out.write(f"{_SHOW_CURSOR}\n")
            self.out.flush()
