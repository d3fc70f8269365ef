"""`smop-edge live`: live captions in a terminal from a microphone and a camera, or from a media file
played at real-time pace (`--input`, `--speed`). Partials are rewritten in place, finals get a line of
their own; `--json` writes one event per line. The runtime path: nothing here imports torch."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Callable

from smop_edge.runtime.errors import UsageError

from .common import add_backend_flags, add_decoding_flags, decoding_options, open_bundle


DESCRIPTION = ("Caption speech as it comes: utterances are found by a voice-activity detector, re-decoded while "
               "they grow (partials; the words two partials in a row agree on are committed) and decoded once "
               "more when they end (finals). Exit codes: 0 done (Ctrl-C or SIGTERM stops the microphone), 2 usage, "
               "3 no such file or device, 4 invalid bundle, 5 input without audio.")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `live`."""
    p = sub.add_parser("live", help="live captions from a microphone and camera, or a file at real-time pace",
                       description=DESCRIPTION)
    add_live_flags(p)
    p.add_argument("--gui", action="store_true",
                   help="the desktop window: preview, captions, pickers (PySide6, the [app] extra)")
    p.set_defaults(func=run_live)


def add_live_flags(p: argparse.ArgumentParser) -> None:
    """The flags `live` and `pi` share: input, task, bundle and backend, decoding, output, timing."""
    src = p.add_argument_group("input")
    src.add_argument("--input", metavar="FILE", help="a media file played at real-time pace (default: microphone)")
    src.add_argument("--speed", type=float, default=1.0,
                     help="--input: times real time (e.g. 8 for tests and soaks; 0: as fast as it decodes)")
    src.add_argument("--loop", type=int, default=1, help="--input: play it this many times (memory soaks)")
    src.add_argument("--mic", metavar="N", help="microphone: device index or name (default: the system's)")
    src.add_argument("--camera", metavar="N", help="camera: an OpenCV index, or 'pi' (libcamera, rpicam-vid) "
                                                   "(default: a Pi camera if there is one, else 0; audio only if "
                                                   "there is none)")
    src.add_argument("--no-camera", action="store_true", help="audio only (ASR); with --input: ignore its video")
    src.add_argument("--list-devices", action="store_true", help="list microphones and cameras, then exit")
    p.add_argument("--task", choices=["auto", "asr", "avsr"], default="auto")
    add_backend_flags(p, ["onnxruntime", "openvino"])
    add_decoding_flags(p)
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="one JSON object per event and line: type (partial, final, state), text, start, end "
                          "(seconds of input), task; finals: latency_ms; partials: committed, tentative")
    out.add_argument("--srt", metavar="FILE", help="save the finals as SubRip subtitles")
    out.add_argument("--txt", metavar="FILE", help="save the finals as text, one utterance a line, each as it comes")
    out.add_argument("--append", action="store_true", help="--txt: add to the file instead of replacing it")
    tune = p.add_argument_group("timing")
    tune.add_argument("--partial-every", type=float, default=1.0, help="seconds between partials (0: none)")
    tune.add_argument("--min-silence", type=float, default=0.6, help="a pause this long (s) ends an utterance")
    tune.add_argument("--padding", type=float, default=0.15,
                      help="silence (s) kept before and after an utterance's speech (the demo model reads "
                           "tight utterances best); below --min-silence, the final is decoded during the pause")
    tune.add_argument("--vad", choices=["energy", "silero"], default="energy",
                      help="voice-activity detector: energy, or silero (better in noise; needs silero-vad's "
                           "wheel: pip install --no-deps silero-vad==6.2.3)")
    tune.add_argument("--behind-after", type=float, default=1.0,
                      help="seconds of input waiting to be decoded before the engine says it is behind")


def _sources(args: argparse.Namespace) -> list:
    from smop_edge.runtime.errors import InputError
    from smop_edge.runtime.live import FileSource, MicrophoneSource, camera_source

    if args.input:
        if args.mic is not None or args.camera is not None:
            raise UsageError("--input plays a file: it takes no --mic or --camera")
        video = not args.no_camera and args.task != "asr"
        return [FileSource(args.input, speed=args.speed, loops=args.loop, video=video)]
    if args.speed != 1.0 or args.loop != 1:
        raise UsageError("--speed and --loop apply to --input FILE")
    mic = int(args.mic) if args.mic is not None and args.mic.isdigit() else args.mic
    sources = [MicrophoneSource(mic)]
    if not args.no_camera and args.task != "asr":
        try:
            sources.append(camera_source(args.camera))
        except InputError as exc:
            if args.camera is not None:
                raise
            print(f"smop-edge: warning: {exc}: audio only (ASR)", file=sys.stderr)
    return sources


class Printer:
    """Events to the terminal: the partial line rewritten in place (only on a terminal), finals on lines
    of their own, states on stderr; or one JSON object a line."""

    def __init__(self, as_json: bool) -> None:
        self.json, self.tty = as_json, sys.stdout.isatty()
        self._partial = False

    def __call__(self, event) -> None:
        if self.json:
            print(json.dumps(event.to_dict()), flush=True)
        elif event.type == "partial" and self.tty:
            tentative = f"\x1b[2m{event.tentative}\x1b[0m" if event.tentative else ""
            sys.stdout.write(f"\r\x1b[K{event.committed} {tentative}".replace("\r\x1b[K ", "\r\x1b[K"))
            sys.stdout.flush()
            self._partial = True
        elif event.type == "final":
            clear = "\r\x1b[K" if self._partial else ""
            print(f"{clear}[{event.start:7.2f} - {event.end:7.2f}] {event.text}", flush=True)
            self._partial = False
        elif event.type == "state" and event.state not in ("listening", "stopped"):
            if self._partial:
                sys.stdout.write("\n")
                self._partial = False
            print(f"smop-edge: {event.state}: {event.message}", file=sys.stderr, flush=True)


def save_finals(finals: list, path: str | Path, fmt: str | None = None) -> None:
    """Final events as a transcript: `fmt` (default: the file's extension) srt, vtt, or text (a line each)."""
    from smop_edge.runtime.transcribe import FileTranscript, Segment

    from ..formats import render

    path = Path(path)
    cues = [Segment(e.start, e.end, e.text) for e in finals if e.text]
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt in ("srt", "vtt"):
        text = render(FileTranscript(str(path), " ".join(c.text for c in cues), "", 0.0, cues, {}, 0.0), fmt)
    else:
        text = "".join(f"{c.text}\n" for c in cues)
    path.write_text(text, encoding="utf-8")


class _Finals:
    """Passes every event on to the view and keeps the finals; `--txt` gets each final as it comes (a
    service that runs for days loses nothing when it is stopped or the power goes)."""

    def __init__(self, view: Callable, txt: str | None, append: bool = False) -> None:
        self.view, self.finals = view, []
        self._txt = open(txt, "a" if append else "w", encoding="utf-8") if txt else None  # noqa: SIM115 - close()

    def __call__(self, event) -> None:
        if event.type == "final":
            self.finals.append(event)
            if self._txt and event.text:
                self._txt.write(event.text + "\n")
                self._txt.flush()
        self.view(event)

    def close(self) -> None:
        if self._txt:
            self._txt.close()


def run_live(args: argparse.Namespace, view: Callable | None = None) -> int:
    """Caption the input until it ends (a file), Ctrl-C or SIGTERM (a microphone); a summary on stderr.
    `view` takes the events (default: the terminal's lines or `--json`)."""
    from smop_edge.runtime.live import LiveEngine, LiveOptions, list_devices
    from smop_edge.runtime.stream import StreamOptions

    if args.list_devices:
        print(list_devices())
        return 0
    if min(args.partial_every, args.padding, args.speed) < 0 or min(args.min_silence, args.behind_after) <= 0 \
            or args.loop < 1:
        raise UsageError("--partial-every, --padding, --speed >= 0; --min-silence, --behind-after > 0; --loop >= 1")
    options = decoding_options(args)
    stream_options = StreamOptions(min_silence=args.min_silence, padding=args.padding,
                                   max_leading_silence=args.padding, partial_every=args.partial_every, vad=args.vad)
    if getattr(args, "gui", False):
        return _run_gui(args, stream_options)
    sources = _sources(args)
    rec = open_bundle(args)
    finals = _Finals(view or Printer(args.json), args.txt, args.append)
    engine = LiveEngine(rec, sources, task=None if args.task == "auto" else args.task, options=options,
                        stream_options=stream_options,
                        live=LiveOptions(behind_after=args.behind_after), on_event=finals)
    if not args.input:
        print("smop-edge: listening (Ctrl-C stops)", file=sys.stderr)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `systemctl stop`: end as Ctrl-C does
    try:
        summary = engine.run()
    finally:
        finals.close()
        if hasattr(view, "close"):
            view.close()
    if args.srt:
        save_finals(finals.finals, args.srt, "srt")
    print(f"smop-edge: {summary.describe()}", file=sys.stderr)
    return 0


def _run_gui(args: argparse.Namespace, stream_options) -> int:
    """The desktop window, with the command line's file, devices and bundle preselected."""
    from smop_edge.runtime.live import FileSource, MicrophoneSource, camera_source, cameras, microphones

    try:
        from .. import captions
    except ImportError as exc:
        raise UsageError(f"--gui needs PySide6 (pip install 'smop-edge[app]'): {exc}") from None

    def make_sources(mic, camera, file):
        if file:
            return [FileSource(file, speed=args.speed, loops=args.loop, video=not args.no_camera)]
        return [MicrophoneSource(mic)] + ([camera_source(camera)] if camera is not None else [])

    return captions.run(args, make_sources, microphones(), [] if args.no_camera else cameras(), stream_options)
