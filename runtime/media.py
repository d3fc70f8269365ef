"""Media input with PyAV: any container / codec ffmpeg reads, audio resampled to 16 kHz mono, video
brought to 25 fps (variable frame rate included) on the same time axis as the audio."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .features import SAMPLE_RATE, VIDEO_FPS


@dataclass
class MediaInfo:
    """What a file holds; `start` is the time origin shared by audio and video (seconds)."""

    path: Path
    has_audio: bool
    has_video: bool
    duration: float
    start: float
    video_size: tuple[int, int] | None = None  # (width, height)
    source_fps: float | None = None
    video_frames: int | None = None  # as the container records it (None when it does not)


def _open(path: Path, fmt: str | None = None, options: dict[str, str] | None = None):
    import av

    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"not a media file: {path} is a directory")
    if path.stat().st_size == 0:
        raise InputError(f"empty file: {path}")
    try:
        return av.open(str(path), format=fmt, options=options or {})
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read {path}: not a media file ffmpeg understands ({exc.__class__.__name__})") from None


def _seconds(value, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def probe(path: str | Path) -> MediaInfo:
    """Streams and duration of a media file, without decoding it."""
    path = Path(path)
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        if audio is None and video is None:
            raise InputError(f"{path} has neither an audio nor a video track")
        starts = [s for s in (_seconds(x.start_time, x.time_base) for x in (audio, video) if x is not None)
                  if s is not None]
        duration = container.duration / 1e6 if container.duration else 0.0
        info = MediaInfo(path, audio is not None, video is not None, duration, min(starts) if starts else 0.0)
        if video is not None:
            if video.codec_context is None:  # a stream ffmpeg cannot decode (damaged header, unknown codec)
                raise InputError(f"cannot read {path}: its video stream has no decoder ffmpeg knows")
            info.video_size = (video.codec_context.width, video.codec_context.height)
            rate = video.average_rate or video.guessed_rate
            info.source_fps = float(rate) if rate else None
            info.video_frames = video.frames or None
    return info


def read_audio(path: str | Path, start: float | None = None, fmt: str | None = None,
               options: dict[str, str] | None = None) -> np.ndarray:
    """The first audio track as float32 mono at 16 kHz, placed on the time axis that starts at
    `start` (default: the file's earliest stream), so that sample i is at start + i / 16000.
    `fmt` and `options` name ffmpeg's demuxer for headerless files (e.g. "g722"; "mulaw" with
    {"sample_rate": "8000"}); such files start at 0."""
    chunks = list(iter_audio(path, start, fmt, options))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def iter_audio(path: str | Path, start: float | None = None, fmt: str | None = None,
               options: dict[str, str] | None = None, block: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """`read_audio`'s samples as they are decoded, in chunks (silence before a late first packet comes in
    `block`-sample pieces): a long file's audio never has to be held whole."""
    import av

    path = Path(path)
    origin = start if start is not None else 0.0 if fmt else probe(path).start
    first: float | None = None
    skip = 0  # samples before the origin still to drop
    done = 0
    with _open(path, fmt, options) as container:
        if not container.streams.audio:
            raise InputError(f"{path} has no audio track")
        latest = _latest_time(container, origin)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in itertools.chain(container.decode(audio=0), [None]):
                if first is None and frame is not None:
                    first = frame.time if frame.time is not None else origin
                    if first - origin > latest:
                        raise InputError(f"{path}: the audio starts at {first - origin:.1f} s, after the file's end "
                                         f"({latest - 1:.1f} s): corrupt timestamps")
                    offset = int(round((first - origin) * SAMPLE_RATE))
                    skip = max(0, -offset)
                    for at in range(0, max(0, offset), block):
                        yield np.zeros(min(block, offset - at), np.float32)
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    if skip:
                        cut, skip = min(skip, len(samples)), skip - min(skip, len(samples))
                        samples = samples[cut:]
                    if len(samples):
                        done += len(samples)
                        yield samples
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot decode the audio of {path} (after {done / SAMPLE_RATE:.1f} s): {exc}") from None


MAX_FRAME_GAP = 300.0  # seconds one video frame may stay on screen: beyond it, timestamps are corrupt


def _latest_time(container, origin: float) -> float:
    """How far past `origin` a frame may start (seconds): the container's duration and a second of slack,
    or an hour more when the container states none. Frames beyond it are corrupt timestamps, which would
    otherwise have a frame repeated (or silence inserted) without limit."""
    return (container.duration / 1e6 if container.duration else 3600.0) + 1.0


def iter_video(path: str | Path, fps: int = VIDEO_FPS, start: float | None = None) -> Iterator[np.ndarray]:
    """RGB frames [H, W, 3] uint8 resampled to `fps`: output frame k shows the source frame on screen at
    time start + k / fps (the latest one that began at or before it), so constant and variable frame
    rates land on the same grid as `read_audio`. Frames are decoded as they are consumed."""
    import av

    path = Path(path)
    origin = probe(path).start if start is None else start
    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path} has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        tick, prev, prev_time = 0, None, None
        latest = _latest_time(container, origin)
        try:
            for index, frame in enumerate(container.decode(video=0)):
                t = (frame.time if frame.time is not None else index / rate) - origin
                if t > latest or (prev_time is not None and t - prev_time > MAX_FRAME_GAP):
                    raise InputError(f"{path}: a video frame at {t:.1f} s (after {prev_time or 0.0:.1f} s; the file "
                                     f"ends at {latest - 1:.1f} s): corrupt timestamps")
                image = frame.to_ndarray(format="rgb24")
                if prev is None and t > 0:
                    prev = np.zeros_like(image)  # nothing on screen before the first frame
                while prev is not None and tick / fps < t:
                    yield prev
                    tick += 1
                prev, prev_time = image, t
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot decode the video of {path} (after {tick / fps:.1f} s): {exc}") from None
        if prev is not None:
            end = prev_time + 1.0 / rate
            while tick / fps < end - 1e-9:
                yield prev
                tick += 1


# (video codec, audio codec) per container we write; PyAV's own ffmpeg build has all of them
VIDEO_CODECS = {".webm": ("libvpx", "libopus"), ".avi": ("mpeg4", "pcm_s16le")}
AUDIO_CODECS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".ogg": "libopus", ".opus": "libopus",
                ".m4a": "aac"}


def _audio_stream(container, codec: str, sample_rate: int):
    """Add a mono audio stream (before anything is muxed: the header lists every stream)."""
    stream = container.add_stream(codec, rate=sample_rate)
    stream.layout = "mono"
    return stream


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    import av
    from fractions import Fraction

    fmt = stream.codec_context.format.name  # the codec's own sample format; mono planar == packed
    samples = np.clip(np.asarray(audio, np.float32).reshape(1, -1), -1, 1)
    if fmt.startswith("s16"):
        samples = (samples * 32767).astype(np.int16)
    elif fmt.startswith("s32"):
        samples = (samples * 2147483647).astype(np.int32)
    chunk = stream.codec_context.frame_size or 1024
    for start in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + chunk]), format=fmt,
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono float audio as wav, flac, mp3, ogg (Opus) or m4a, by the file's extension."""
    import av

    path = Path(path)
    codec = AUDIO_CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"cannot write {path.suffix} audio (choose from {', '.join(AUDIO_CODECS)})")
    with av.open(str(path), "w") as container:
        _encode_audio(container, _audio_stream(container, codec, sample_rate), audio, sample_rate)
    return path


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = VIDEO_FPS,
                audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE,
                times: list[float] | None = None, quality: int = 3) -> Path:
    """Write RGB frames [T, H, W, 3] uint8 (and optional mono float audio) to mp4, mkv, mov, avi or webm
    (MPEG-4 Part 2 + AAC, PCM in AVI, or VP8 + Opus for webm). `times` gives each frame's start in seconds
    for a variable frame rate; otherwise frames are 1 / fps apart. `quality`: MPEG-4 quantiser, 2 (best)
    to 31 (webm: CRF = 3 x quality + 1)."""
    import av
    from fractions import Fraction

    import itertools

    path = Path(path)
    stream_in = iter(frames)  # frames are encoded as they come: a generator keeps memory flat
    first = next(stream_in, None)
    if first is None:
        raise ValueError("no frames to write")
    height, width = first.shape[:2]
    if times is not None and np.any(np.diff(np.round(np.asarray(times) * 1000)) <= 0):
        raise ValueError("times must give one strictly increasing start (at 1 ms resolution) per frame")
    with av.open(str(path), "w") as container:
        vcodec, acodec = VIDEO_CODECS.get(path.suffix.lower(), ("mpeg4", "aac"))
        vstream = container.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1000))
        vstream.width, vstream.height = width - width % 2, height - height % 2
        vstream.pix_fmt = "yuv420p"
        # constant rate: one tick per frame (what AVI needs); variable rate: millisecond ticks
        tick = Fraction(1, 1000) if times is not None else 1 / Fraction(fps).limit_denominator(1000)
        vstream.codec_context.time_base = tick
        vstream.options = ({"qscale": str(quality)} if vcodec == "mpeg4"
                           else {"crf": str(3 * quality + 1), "b": "2M"})
        astream = _audio_stream(container, acodec, sample_rate) if audio is not None else None
        for i, image in enumerate(itertools.chain([first], stream_in)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: vstream.height, : vstream.width]),
                                               format="rgb24")
            frame.pts = int(round(times[i] * 1000)) if times is not None else i
            frame.time_base = tick
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, audio, sample_rate)
    return path
