"""Live captioning on the stream object: sources (a media file played at real-time pace, a microphone, a
camera) put timed audio chunks and RGB frames on a queue from their own threads; one worker feeds them
to a `Stream`, decodes, and emits partial and final events with the latency of each final.

    engine = LiveEngine(recognizer, [FileSource("talk.mp4", speed=1.0)], on_event=print)
    summary = engine.run()                # or start() ... stop(); join()

Nothing is dropped: the queue is unbounded, and when decoding falls behind the input the engine says so
and degrades in order (partials less often, then ASR without lips) until it has caught up. Every input
sample ends in a decoded utterance or a silence (`LiveSummary`: samples in = decoded + silent).
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import media
from .decoding import DecodingOptions
from .errors import InputError, UnsuitableInputError, UsageError
from .features import SAMPLE_RATE, VIDEO_FPS
from .stream import Stream, StreamOptions, StreamResult


@dataclass
class AudioChunk:
    """Mono samples at `rate` starting `time` seconds into the input; `wall`: when it was captured."""

    time: float
    rate: int
    samples: np.ndarray
    wall: float = 0.0


@dataclass
class VideoFrame:
    """An RGB frame [H, W, 3] uint8 shown `time` seconds into the input."""

    time: float
    image: np.ndarray
    wall: float = 0.0


Put = Callable[[AudioChunk | VideoFrame], None]


# ---- sources ------------------------------------------------------------------------------------------
class FileSource:
    """A media file played at `speed` times real time (0: as fast as it can be read), `loops` times over."""

    def __init__(self, path: str | Path, speed: float = 1.0, chunk: float = 0.04, loops: int = 1,
                 video: bool = True) -> None:
        if speed < 0 or loops < 1 or chunk <= 0:
            raise UsageError("speed must be >= 0, loops >= 1 and the chunk > 0 s")
        self.path, self.speed, self.loops = Path(path), speed, loops
        info = media.probe(self.path)
        if not info.has_audio:
            raise UnsuitableInputError(f"{self.path} has no audio track: live captioning finds speech in the audio")
        self.start = info.start
        self.audio = media.read_audio(self.path, info.start)
        self.has_video = info.has_video and video
        self.step = max(int(round(chunk * SAMPLE_RATE)), 1)
        self.realtime = 0 < speed <= 1.0

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE * self.loops

    def run(self, put: Put, stop: threading.Event, origin: float) -> None:
        length = len(self.audio) / SAMPLE_RATE
        for loop in range(self.loops):
            offset = loop * length
            frames = enumerate(media.iter_video(self.path, start=self.start)) if self.has_video else iter(())
            pending = next(frames, None)
            for pos in range(0, len(self.audio), self.step):
                chunk = self.audio[pos:pos + self.step]
                done = offset + (pos + len(chunk)) / SAMPLE_RATE  # the input time this chunk completes
                if self.speed > 0:
                    delay = origin + done / self.speed - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                elif stop.is_set():
                    return
                while pending is not None and pending[0] / VIDEO_FPS < min(done - offset, length):
                    put(VideoFrame(offset + pending[0] / VIDEO_FPS, pending[1], time.monotonic()))
                    pending = next(frames, None)
                put(AudioChunk(offset + pos / SAMPLE_RATE, SAMPLE_RATE, chunk, time.monotonic()))


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise UsageError(f"the microphone needs sounddevice and PortAudio (pip install 'smop-edge[app]'; "
                         f"Debian: libportaudio2): {exc}") from None
    return sounddevice


class MicrophoneSource:
    """A PortAudio input device (sounddevice), mono, at the device's own rate (the stream resamples)."""

    realtime, has_video = True, False

    def __init__(self, device: int | str | None = None, block: float = 0.02) -> None:
        sd = _sounddevice()
        if device is None and sd.default.device[0] < 0:  # no default input (ALSA on a Pi without a desktop):
            device = next((i for _, i in microphones()), None)  # the first device that records
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            which = f"microphone {device}" if device is not None else "microphone found"
            raise InputError(f"no {which} ({exc}); see smop-edge live --list-devices, or use --input FILE") from None
        self.device, self.name = device, info["name"]
        self.rate = int(info["default_samplerate"])
        self.block = max(int(self.rate * block), 1)
        self.overflows = 0  # PortAudio's input overflows: audio the device dropped before we saw it

    def run(self, put: Put, stop: threading.Event, origin: float) -> None:
        sd = _sounddevice()
        received = 0

        def callback(indata, frames, _time, status) -> None:
            nonlocal received
            if status.input_overflow:
                self.overflows += 1
            put(AudioChunk(received / self.rate, self.rate, indata[:, 0].copy(), time.monotonic()))
            received += frames

        try:
            with sd.InputStream(device=self.device, channels=1, samplerate=self.rate, blocksize=self.block,
                                dtype="float32", callback=callback):
                stop.wait()
        except sd.PortAudioError as exc:
            raise InputError(f"cannot record from microphone {self.name!r}: {exc}") from None


class CameraSource:
    """An OpenCV camera (`cv2.VideoCapture(index)`), frames converted to RGB, timed by the wall clock."""

    realtime, has_video, has_audio = True, True, False

    def __init__(self, index: int = 0) -> None:
        cv2 = _quiet_cv2()
        self.index = index
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise InputError(f"cannot open camera {index}")

    def run(self, put: Put, stop: threading.Event, origin: float) -> None:
        try:
            while not stop.is_set():
                ok, bgr = self._capture.read()
                if not ok:
                    raise InputError(f"camera {self.index} stopped delivering frames")
                now = time.monotonic()
                put(VideoFrame(now - origin, np.ascontiguousarray(bgr[..., ::-1]), now))
        finally:
            self._capture.release()


class LibcameraSource:
    """A Raspberry Pi camera through libcamera: `rpicam-vid` (Raspberry Pi OS's camera app) writes raw I420
    frames to a pipe, converted here to RGB and timed by the wall clock. A pipe rather than Picamera2: that
    module comes only from the system's packages (for the system's Python and numpy), a program works with
    any venv. `command` replaces the program (tests feed recorded frames through it)."""

    realtime, has_video, has_audio = True, True, False
    PROGRAMS = ("rpicam-vid", "libcamera-vid")  # the second: its name before Raspberry Pi OS bookworm

    def __init__(self, width: int = 640, height: int = 480, fps: int = VIDEO_FPS,
                 command: list[str] | None = None) -> None:
        if width % 64 or height % 2:  # wider rows would carry the camera's stride padding into the pipe
            raise UsageError(f"the Pi camera's width must be a multiple of 64 and its height even, not "
                             f"{width}x{height}")
        self.width, self.height = width, height
        if command is None:
            program = self.program()
            if program is None:
                raise InputError("no Raspberry Pi camera program (rpicam-vid; Raspberry Pi OS: "
                                 "sudo apt install rpicam-apps-lite)")
            command = [program, "--nopreview", "--verbose", "0", "--timeout", "0", "--codec", "yuv420", "--flush",
                       "--width", str(width), "--height", str(height), "--framerate", str(fps), "--output", "-"]
        self.command = command

    def run(self, put: Put, stop: threading.Event, origin: float) -> None:
        cv2 = _quiet_cv2()
        size = self.width * self.height * 3 // 2
        log = tempfile.TemporaryFile()  # not a pipe: a full pipe would stall the camera program
        process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log, bufsize=0)
        try:
            while not stop.is_set():
                data = _read_exactly(process.stdout, size)
                if data is None:
                    process.wait()
                    log.seek(0)
                    error = log.read().decode(errors="replace").strip().splitlines()
                    raise InputError(f"the Pi camera stopped ({self.command[0]}"
                                     f"{': ' + error[-1] if error else ''})")
                now = time.monotonic()
                i420 = np.frombuffer(data, np.uint8).reshape(self.height * 3 // 2, self.width)
                put(VideoFrame(now - origin, cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420), now))
        finally:
            process.kill()
            process.wait()
            log.close()

    @classmethod
    def program(cls) -> str | None:
        """The camera program's name where one is installed."""
        return next((p for p in cls.PROGRAMS if shutil.which(p)), None)

    @classmethod
    def cameras(cls) -> list[str]:
        """The cameras libcamera sees (`rpicam-vid --list-cameras`), one line each; empty without its program."""
        program = cls.program()
        if program is None:
            return []
        try:
            listed = subprocess.run([program, "--list-cameras"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [line.strip() for line in listed.stdout.splitlines() if line.strip()[:1].isdigit() and " : " in line]


def _read_exactly(pipe, size: int) -> bytes | None:
    """`size` bytes from a pipe, or None at its end."""
    parts, left = [], size
    while left:
        part = pipe.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def camera_source(spec: str | int | None):
    """The camera a `--camera` value names: an OpenCV index, `pi` (libcamera), or None/`auto`: a Pi camera
    where libcamera sees one, else OpenCV's camera 0 (InputError without a camera)."""
    if spec in (None, "auto"):
        return LibcameraSource() if LibcameraSource.cameras() else CameraSource(0)
    if spec == "pi":
        return LibcameraSource()
    if isinstance(spec, int) or str(spec).isdigit():
        return CameraSource(int(spec))
    raise UsageError(f"--camera takes a camera index, 'pi' or 'auto', not {spec!r}")


def _quiet_cv2():
    """OpenCV without its warnings for cameras that are not there (we report those ourselves)."""
    import cv2

    logging = getattr(cv2.utils, "logging", None)  # OpenCV 4.14 moved setLogLevel there; 4.11 has it on cv2
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    else:
        cv2.setLogLevel(0)
    return cv2


def microphones() -> list[tuple[str, int]]:
    """PortAudio's input devices as (name, index), the system's default first; empty without PortAudio."""
    try:
        sd = _sounddevice()
    except UsageError:
        return []
    default = sd.default.device[0]
    found = [(f"{d['name']} ({int(d['default_samplerate'])} Hz)", i) for i, d in enumerate(sd.query_devices())
             if d["max_input_channels"] > 0]
    return sorted(found, key=lambda item: item[1] != default)


def cameras(count: int = 4) -> list[int | str]:
    """What `--camera` can name: "pi" where libcamera sees a camera, then the indices OpenCV opens
    (/dev/video* on Linux, else the first `count`)."""
    cv2 = _quiet_cv2()
    linux = sys.platform.startswith("linux") and Path("/dev").is_dir()
    candidates = sorted(int(p.name[5:]) for p in Path("/dev").glob("video*") if p.name[5:].isdigit()) \
        if linux else range(count)
    found: list[int | str] = ["pi"] if LibcameraSource.cameras() else []
    for index in candidates:
        capture = cv2.VideoCapture(index)
        if capture.isOpened():
            found.append(index)
        capture.release()
    return found


def list_devices() -> str:
    """The microphones and cameras `--mic N` and `--camera N` can name."""
    mics, cams = microphones(), cameras()
    lines = ["microphones (--mic N):" if mics else "microphones: none found (PortAudio / sounddevice)"]
    lines += [f"  {index}  {name}" for name, index in mics]
    lines.append("cameras (--camera N):" if cams else "cameras: none found")
    return "\n".join(lines + [f"  {index}" for index in cams])


# ---- partial text -----------------------------------------------------------------------------------------
class LocalAgreement:
    """LocalAgreement-2 (whisper_streaming): of an utterance's successive partial hypotheses, the word
    prefix two in a row agree on is committed and never taken back; the rest is tentative."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._previous: list[str] | None = None

    def update(self, text: str) -> tuple[str, str]:
        words = text.split()
        if self._previous is not None:
            agreed = _common(self._previous, words)
            if agreed > len(self.committed) and words[:len(self.committed)] == self.committed:
                self.committed = words[:agreed]
        self._previous = words
        return " ".join(self.committed), " ".join(words[_common(words, self.committed):])

    def reset(self) -> None:
        self.committed, self._previous = [], None


def _common(a: list[str], b: list[str]) -> int:
    """Length of the common word prefix of `a` and `b`."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


# ---- the engine -------------------------------------------------------------------------------------------
@dataclass
class LiveEvent:
    """`type`: partial | final | state. Times in seconds of input; `latency_ms` (finals): from the moment
    the last sample of the utterance's speech was captured to the moment this event was emitted."""

    type: str
    text: str = ""
    start: float = 0.0
    end: float = 0.0
    task: str = ""
    latency_ms: float | None = None
    committed: str = ""  # partials: the words two successive partials agreed on (never taken back)
    tentative: str = ""  # partials: the rest
    state: str = ""  # state events: listening | behind | caught-up | audio-only | stopped
    message: str = ""

    def to_dict(self) -> dict:
        keep = {"partial": ("text", "start", "end", "task", "committed", "tentative"),
                "final": ("text", "start", "end", "task", "latency_ms"),
                "state": ("state", "message")}[self.type]
        data = asdict(self)
        return {"type": self.type, **{k: data[k] for k in keep}}


@dataclass
class LiveOptions:
    """When the engine says it is behind (seconds of input waiting to be decoded) and how it degrades."""

    behind_after: float = 1.0
    slower_partials: float = 3.0  # first step: partials this many times less often
    degrade: bool | None = None  # None: only when every source runs at real-time pace
    file_backlog: float = 2.0  # a source faster than real time waits while this much of it is queued (s)


@dataclass
class LiveSummary:
    samples_in: int = 0  # 16 kHz samples fed to the stream
    samples_decoded: int = 0  # in utterances
    samples_silent: int = 0  # in silences
    overflows: int = 0  # microphone input overflows (audio the device lost before capture)
    frames_in: int = 0
    finals: int = 0
    partials: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    behind: int = 0  # times the engine fell behind
    wall_seconds: float = 0.0

    def latency(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def describe(self) -> str:
        s = SAMPLE_RATE
        p50, p90 = self.latency(50), self.latency(90)
        latency = f"latency p50 {p50:.0f} ms, p90 {p90:.0f} ms" if p50 is not None else "latency: no finals"
        return (f"{self.samples_in / s:.1f} s in: {self.samples_decoded / s:.1f} s decoded, {self.samples_silent / s:.1f} s "
                f"silent ({self.samples_in} = {self.samples_decoded} + {self.samples_silent} samples), "
                f"{self.overflows} overflows; {self.finals} finals, {latency}; behind {self.behind} times; "
                f"{self.wall_seconds:.1f} s wall")


_DONE = object()


class _CameraLost(Exception):
    """A video-only source ended with an error (carried to the worker, which says so and goes on)."""


class LiveEngine:
    """Feeds one `Stream` from sources (each in its capture thread) in a worker thread; events go to
    `on_event` (called in the worker) or, without it, to the `events` queue; `on_frame` sees each video
    frame with its mouth crop (a preview)."""

    def __init__(self, recognizer, sources: list, task: str | None = None, options: DecodingOptions | None = None,
                 stream_options: StreamOptions | None = None, live: LiveOptions | None = None,
                 on_event: Callable[[LiveEvent], None] | None = None,
                 on_frame: Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], None] | None = None) -> None:
        if not sources:
            raise UsageError("the live engine needs at least one source")
        stream_options = StreamOptions(**asdict(stream_options or StreamOptions()))  # ours to change
        self.video = any(getattr(s, "has_video", True) for s in sources) and task != "asr" and \
            any(t in recognizer.tasks for t in ("avsr", "vsr"))
        self._cropper = None
        if self.video:  # made now, not at the first frame: mediapipe takes a second to start
            from .lip_cropper import LiveLipCropper

            self._cropper = LiveLipCropper()
        self.stream = Stream(recognizer, task, options, stream_options, self._cropper)
        self._on_frame = on_frame  # (RGB frame, its mouth crop, the image -> crop transform), in the worker
        self.sources, self.task = sources, task
        self.live = live or LiveOptions()
        self.degrade = all(s.realtime for s in sources) if self.live.degrade is None else self.live.degrade
        self.events: queue.Queue[LiveEvent] = queue.Queue()
        self._emit = on_event or self.events.put
        self._queue: queue.Queue = queue.Queue()
        self._queued = 0.0  # seconds of audio waiting in the queue
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Event()  # the worker is done: summary filled, nothing left to decode
        self._threads: list[threading.Thread] = []
        self._fed: deque[tuple[int, float]] = deque()  # (samples fed so far, capture time of that chunk)
        self._agreement = LocalAgreement()
        self._partial_every = stream_options.partial_every
        self.level = 0  # 0 normal, 1 partials less often, 2 ASR without lips
        self.summary = LiveSummary()
        self.error: BaseException | None = None
        self._began = 0.0

    # ---- control ----
    def start(self) -> "LiveEngine":
        self._warm_up()
        self._began = time.monotonic()
        origin = self._began
        for source in self.sources:
            thread = threading.Thread(target=self._capture, args=(source, origin), daemon=True,
                                      name=f"capture-{type(source).__name__}")
            self._threads.append(thread)
        self._worker = threading.Thread(target=self._work, daemon=True, name="live-worker")
        self._worker.start()
        for thread in self._threads:
            thread.start()
        return self

    def _warm_up(self) -> None:
        """One decode per task the stream may use, so the first utterance is not slowed by graph start-up."""
        rec = self.stream.recognizer
        tasks = [self.task] if self.task else [t for t in ("avsr", "asr") if t in rec.tasks]
        for task in tasks:
            if task == "avsr" and not self.video:
                continue
            frames = np.zeros((VIDEO_FPS, 88, 88), np.float32) if task == "avsr" else None
            rec.transcribe(np.zeros(SAMPLE_RATE, np.float32), frames, task, self.stream.options)

    def stop(self) -> None:
        """Stop capturing; what was captured is still decoded (join() waits for it)."""
        self._stop.set()

    def is_alive(self) -> bool:
        return not self._finished.is_set()

    def join(self, timeout: float | None = None) -> LiveSummary | None:
        # an Event, not Thread.join: on CPython 3.11 a KeyboardInterrupt (Ctrl-C, SIGTERM) that lands inside a
        # thread's join marks the thread as ended, and later joins return while it still decodes
        if not self._finished.wait(timeout):
            return None
        self._worker.join()  # its last moments (set at the end of its work): a graph freed on a daemon thread at
        # interpreter exit aborts the process
        if self.error is not None:
            raise self.error
        return self.summary

    def run(self) -> LiveSummary:
        self.start()
        try:
            while self.join(0.2) is None:
                pass
        except KeyboardInterrupt:
            self.stop()
            self.join()
        return self.summary

    # ---- capture threads ----
    def _put(self, item) -> None:
        if isinstance(item, AudioChunk):
            with self._lock:
                self._queued += len(item.samples) / item.rate
        self._queue.put(item)

    def _put_when_room(self, item) -> None:
        """A file waits while `file_backlog` seconds of it are queued (a microphone cannot wait: its put never
        blocks), so a file read faster than it decodes holds bounded memory."""
        while self._queued > self.live.file_backlog and not self._stop.is_set():
            time.sleep(0.005)
        self._put(item)

    def _capture(self, source, origin: float) -> None:
        try:
            source.run(self._put if source.realtime else self._put_when_room, self._stop, origin)
        except InputError as exc:
            # a camera that fails (unplugged, its program ended) leaves the audio: captions go on without lips
            self._queue.put(exc if getattr(source, "has_audio", True) else _CameraLost(str(exc)))
        except BaseException as exc:  # noqa: BLE001 - handed to the worker, raised by join()
            self._queue.put(exc)
        finally:
            self._queue.put(_DONE)

    # ---- worker ----
    def _work(self) -> None:
        try:
            self._emit(LiveEvent("state", state="listening", message="listening"))
            running = len(self.sources)
            while running:
                items = [self._queue.get()]
                while True:  # take everything waiting: one decode for the lot
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                backlog = self._queued
                for item in items:
                    if item is _DONE:
                        running -= 1
                    elif isinstance(item, _CameraLost):
                        self._emit(LiveEvent("state", state="audio-only", message=f"{item}: captions from the "
                                                                                  "audio alone"))
                    elif isinstance(item, BaseException):
                        self._stop.set()
                        raise item
                    else:
                        self._feed(item)
                self._pace(backlog)
                self._results(self.stream.decode())
            self.stream.input_finished()
            self._results(self.stream.decode())
            self._emit(LiveEvent("state", state="stopped", message="input ended"))
        except BaseException as exc:  # noqa: BLE001 - raised again by join()
            self.error = exc
            self._stop.set()
        finally:
            s, summary = self.stream, self.summary
            summary.samples_in, summary.samples_silent = s.samples_received, s.silent_samples
            summary.samples_decoded = sum(e - b for b, e, decoded in s.spans if decoded)
            summary.frames_in = s.frames_received
            summary.overflows = sum(getattr(src, "overflows", 0) for src in self.sources)
            summary.wall_seconds = time.monotonic() - self._began
            self._finished.set()

    def _feed(self, item) -> None:
        if isinstance(item, VideoFrame):
            crop = self.stream.accept_frame(item.image, item.time) if self.level < 2 else None
            if self._on_frame is not None:
                transform = self._cropper.transform if crop is not None and self._cropper is not None else None
                self._on_frame(item.image, crop, transform)
            return
        with self._lock:
            self._queued -= len(item.samples) / item.rate
        self.stream.accept_waveform(item.rate, item.samples)
        self._fed.append((self.stream.samples_received, item.wall))

    def _pace(self, backlog: float) -> None:
        """Say when decoding falls behind the input, and degrade in order until it catches up."""
        behind = self.live.behind_after
        if backlog > behind * (1 + self.level) and self.level < 2:
            self.summary.behind += self.level == 0
            if not self.degrade:
                if self.level == 0:
                    self.level = 1  # reported once; nothing changes
                    self._emit(LiveEvent("state", state="behind", message=f"{backlog:.1f} s of input waiting "
                                                                          "(read faster than real time: no change)"))
                return
            self.level += 1
            if self.level == 1:
                self.stream.vad.partial_every = self._partial_every * self.live.slower_partials
                message = f"{backlog:.1f} s of input waiting: partials every {self.stream.vad.partial_every:g} s"
            elif "asr" in self.stream.recognizer.tasks and self.task != "asr":
                self.stream.task = "asr"
                message = f"{backlog:.1f} s of input waiting: ASR without lips"
            else:
                message = f"{backlog:.1f} s of input waiting"
            self._emit(LiveEvent("state", state="behind", message=message))
        elif self.level and backlog < behind / 4:
            self.level = 0
            self.stream.vad.partial_every, self.stream.task = self._partial_every, self.task
            self._emit(LiveEvent("state", state="caught-up", message="decoding keeps up with the input again"))

    def _results(self, results: list[StreamResult]) -> None:
        now = time.monotonic()
        for r in results:
            if r.final:
                latency = self._latency(r, now)
                self.summary.finals += 1
                self.summary.latencies_ms.append(latency)
                self._agreement.reset()
                if r.task == "asr" and self.stream.frames_received and self.level < 2:
                    self._emit(LiveEvent("state", state="audio-only", message="no face: this utterance is ASR"))
                self._emit(LiveEvent("final", r.text, r.start, r.end, r.task, latency_ms=round(latency, 1)))
            else:
                self.summary.partials += 1
                committed, tentative = self._agreement.update(r.text)
                self._emit(LiveEvent("partial", r.text, r.start, r.end, r.task, committed=committed,
                                     tentative=tentative))
        if self.stream.spans:  # capture times are needed only for the open span
            open_from = self.stream.spans[-1][1]
            while len(self._fed) > 1 and self._fed[1][0] <= open_from:
                self._fed.popleft()

    def _latency(self, r: StreamResult, now: float) -> float:
        """Milliseconds from the capture of the chunk holding the speech's last sample to `now`."""
        sample = int(round(r.speech_end * SAMPLE_RATE))
        for fed, wall in self._fed:
            if fed >= sample:
                return (now - wall) * 1000.0
        return 0.0
