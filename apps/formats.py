"""Transcript output formats: plain text, SubRip (.srt) and WebVTT."""

from __future__ import annotations

from smop_edge.runtime.transcribe import FileTranscript


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render(result: FileTranscript, fmt: str) -> str:
    """The transcript of one file as `txt`, `srt` or `vtt`."""
    cues = [s for s in result.segments if s.text]
    if fmt == "txt":
        return result.text
    if fmt == "srt":
        return "\n".join(f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text}\n"
                         for i, s in enumerate(cues, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text}\n" for s in cues)
    raise ValueError(f"unknown format {fmt!r}")
