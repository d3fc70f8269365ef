"""Transcribing media files: decode, choose the task, split long inputs at pauses, recognise each
segment, and report text, segments with timestamps, per-stage timings and the real-time factor."""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from . import lips, media, segments
from .decoding import DecodingOptions
from .errors import UnsuitableInputError
from .features import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VIDEO_FPS
from .prompt import TASK_MODALITIES, pick_task
from .recognizer import elapsed_ms
from .stream import StreamOptions

MAX_SEGMENT_SECONDS = 24.0
# a pause as long as the one that ends a live stream's utterance ends a file's: models trained on single
# utterances misread several read as one (the demo model: 99 % WER on 30 dev clips joined with 1-1.5 s
# pauses, decoded in 24 s windows; 31 % utterance by utterance)
UTTERANCE_PAUSE = StreamOptions.min_silence
MIN_TAIL = SAMPLE_RATE // 4  # audio past the video's end shorter than this is codec padding, not speech
FACE_SHARE = 0.5  # a segment's frames that must show the speaker's face for it to be read with the lips


class Recognises(Protocol):
    """What the file driver needs from a recognizer (runtime `Recognizer` or the torch reference)."""

    tasks: list[str]

    def transcribe(self, audio, frames, task, options): ...


@dataclass
class Segment:
    start: float
    end: float
    text: str
    task: str | None = None  # set where it differs from the file's task (e.g. ASR where the video had ended)


@dataclass
class FileTranscript:
    path: str
    text: str
    task: str
    duration: float
    segments: list[Segment]
    timings_ms: dict[str, float]
    real_time_factor: float
    frames_with_face: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FileTranscript":
        """The inverse of `to_dict` (a transcript that crossed a process boundary as JSON)."""
        return cls(**{**data, "segments": [Segment(**s) for s in data["segments"]]})


def mouth_frames(path: Path, roi: bool, audio: np.ndarray | None, start: float,
                 progress: Callable[[str, int], None] | None = None) -> tuple[np.ndarray | None, int]:
    """Normalised 88x88 mouth frames of a whole (short) video at 25 fps and how many frames had the
    speaker's face. With `roi` the video already is the mouth ROI (the reference datasets' 96x96 form);
    otherwise the face whose mouth follows `audio` is cropped."""
    from .lip_cropper import video_rms

    with _Mouths(path, roi, video_rms(audio), start, progress) as mouths:
        frames, found, _ = mouths.frames(0, None)
    return (frames, found) if found else (None, 0)


class _Mouths:
    """A file's mouth frames segment by segment, in order, so that a long video's crops are never all in
    memory: a mouth-ROI video (`roi`) resized frame by frame, anything else through `SegmentCropper`."""

    def __init__(self, path: Path, roi: bool, rms: np.ndarray | None, start: float,
                 progress: Callable[[str, int], None] | None) -> None:
        from .lip_cropper import SegmentCropper

        frames = lambda: media.iter_video(path, start=start)  # noqa: E731
        self.cropper = None if roi else SegmentCropper(frames, rms, progress=progress)
        self._rois = (lips.resize_rois(f[None])[0] for f in frames()) if roi else None
        self.position, self.exhausted = 0, False

    def frames(self, start: int, end: int | None) -> tuple[np.ndarray | None, int, int]:
        """Normalised 88 x 88 frames [start, end) (to the end with None; None without a face), the frames
        with the speaker's face, and the frames the video had there (fewer where it ends sooner)."""
        if self.cropper is not None:
            rois, found, _ = self.cropper.crop(start, end)
            n, self.exhausted = self.cropper.position - start, self.cropper.exhausted
        else:
            for _ in itertools.islice(self._rois, start - self.position):
                pass
            rois = list(itertools.islice(self._rois, None if end is None else end - start))
            n = found = len(rois)
            self.exhausted = end is None or n < end - start
            rois = np.stack(rois) if rois else None
        self.position = start + n
        return (lips.normalize_rois(rois) if found else None), found, n

    def __enter__(self) -> "_Mouths":
        return self

    def __exit__(self, *exc) -> None:
        if self.cropper is not None:
            self.cropper.close()


class _AudioReader:
    """A file's audio range by range, in order, from one sequential decode: memory holds one range."""

    def __init__(self, path: Path, start: float) -> None:
        self._chunks = media.iter_audio(path, start)
        self._buffer, self._at = np.zeros(0, np.float32), 0  # samples from self._at on

    def take(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b), zero-padded past the end of the audio; `a` is at or after the last `b`."""
        while self._at + len(self._buffer) < b:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer = np.concatenate([self._buffer, chunk])
        have = self._buffer[max(0, a - self._at): max(0, b - self._at)]
        self._buffer, self._at = self._buffer[max(0, b - self._at):], max(self._at, b)
        return np.pad(have, (0, b - a - len(have)))


def transcribe_media(rec: Recognises, path: str | Path, task: str | None = None, roi: bool = False,
                     options: DecodingOptions | None = None,
                     progress: Progress | None = None) -> FileTranscript:
    """Recognise one media file; `task` None picks AVSR / ASR / VSR from what the file and model allow.
    The file is read in two streaming passes (the audio's levels, then segment by segment: at most 24 s,
    cut at pauses), so memory does not grow with its length. In AVSR a segment where the speaker's face
    is missing for most of its frames, or that lies after the video's end, is read from the audio."""
    path = Path(path)
    options = options or DecodingOptions()
    timings: dict[str, float] = {"media_decode": 0.0}
    warnings: list[str] = []
    started = time.perf_counter()
    info = media.probe(path)
    requested = task
    wants_video = any("video" in TASK_MODALITIES[t] for t in rec.tasks) and task != "asr"
    wants_audio = any("audio" in TASK_MODALITIES[t] for t in rec.tasks) and task != "vsr"
    levels = None
    if info.has_audio and wants_audio:
        t0 = time.perf_counter()
        levels = segments.levels(media.iter_audio(path, info.start))
        timings["media_decode"] = elapsed_ms(t0)
        levels = levels if levels.samples else None
    has_video = info.has_video and wants_video  # a face is assumed; segments without one fall back
    try:
        task = pick_task(rec.tasks, levels is not None, has_video, task)
    except UnsuitableInputError as exc:
        raise UnsuitableInputError(f"{path}: {exc}") from None
    need = TASK_MODALITIES[task]
    speech = segments.mask_of(levels.db) if levels is not None else None
    if "video" not in need and not speech.any():
        warnings.append("no speech found (silence)")
        duration = levels.samples / SAMPLE_RATE
        return FileTranscript(str(path), "", task, duration, [], timings, _rtf(started, duration), None, warnings)
    can_asr = levels is not None and "asr" in rec.tasks and "audio" in need  # parts without lips: from the audio
    reader = _AudioReader(path, info.start) if levels is not None else None
    expected = int(round(info.duration * VIDEO_FPS))
    mouths = _Mouths(path, roi, levels.video_rms if levels is not None else None, info.start,
                     (lambda stage, done: progress(stage, done, expected)) if progress else None
                     ) if "video" in need else None
    results: list[Segment] = []
    faceless: list[str] = []
    found, video_end = (0 if mouths else None), None
    spans = _spans(levels, "video" in need) if levels is not None else []

    def recognise(a: int, b: int, seg_task: str, frames: np.ndarray | None) -> None:
        """Transcribe samples [a, b) as `seg_task` (silence in ASR is not sent to the model)."""
        seg_need = TASK_MODALITIES[seg_task]
        text = ""
        if "video" in seg_need or speech[a // segments.FRAME: b // segments.FRAME + 1].any():
            audio = reader.take(a, b) if "audio" in seg_need else None
            out = rec.transcribe(audio, frames, seg_task, options)
            text = out.text
            for stage, ms in getattr(out, "timings", {}).items():
                timings[stage] = round(timings.get(stage, 0.0) + ms, 3)
        results.append(Segment(round(a / SAMPLE_RATE, 3), round(b / SAMPLE_RATE, 3), text,
                               None if seg_task == task else seg_task))

    with contextlib.ExitStack() as stack:
        if mouths is not None:
            stack.enter_context(mouths)
        window = int(MAX_SEGMENT_SECONDS * VIDEO_FPS) * SAMPLES_PER_VIDEO_FRAME
        i = 0
        while True:  # the audio's spans, then (video longer than the audio, or no audio) windows of video
            if i < len(spans):
                a, b = spans[i]
            elif mouths is not None and not mouths.exhausted:
                a = mouths.position * SAMPLES_PER_VIDEO_FRAME
                b = a + window
            else:
                break
            i += 1
            if progress and results:
                progress("segments", len(results), max(len(spans), len(results)))
            if mouths is None:
                recognise(a, b, task, None)
                continue
            if video_end is not None:  # after the video's end: from the audio alone
                recognise(a, b, "asr", None)
                continue
            t0 = time.perf_counter()
            f0 = a // SAMPLES_PER_VIDEO_FRAME
            frames, seg_found, n = mouths.frames(f0, max(b // SAMPLES_PER_VIDEO_FRAME, f0 + 1))
            timings["lip_crop"] = round(timings.get("lip_crop", 0.0) + elapsed_ms(t0), 3)
            found += seg_found
            cut = (f0 + n) * SAMPLES_PER_VIDEO_FRAME
            if n and seg_found >= FACE_SHARE * n:
                recognise(a, cut, task, frames)
            elif n:
                faceless.append(f"{a / SAMPLE_RATE:.1f}-{cut / SAMPLE_RATE:.1f} s")
                if can_asr:
                    recognise(a, cut, "asr", None)
            rest = min(b, levels.samples) if levels is not None else cut  # audio after the video's end
            if mouths.exhausted and rest - cut > MIN_TAIL:
                video_end = cut
                if can_asr:
                    recognise(cut, rest, "asr", None)
    if progress and results:
        progress("segments", len(results), len(results))
    if video_end is not None and speech[video_end // segments.FRAME:].any():
        span = f"{video_end / SAMPLE_RATE:.1f}-{levels.samples / SAMPLE_RATE:.1f} s"
        read = "transcribed from the audio alone" if can_asr else "not transcribed (no ASR)"
        warnings.append(f"the video ends before the audio: {span} {read}")
    if mouths is not None and not found:  # no face anywhere: as if the file had no video
        if requested is not None or not can_asr:
            try:
                pick_task(rec.tasks, levels is not None, False, requested)
            except UnsuitableInputError as exc:
                raise UnsuitableInputError(f"{path}: {exc}") from None
        task, faceless = "asr", []
        warnings.append("no face found in the video")
        for seg in results:
            seg.task = None
    if faceless:
        read = "read from the audio alone" if can_asr else "not transcribed"
        warnings.append(f"the speaker's face is missing for most of {', '.join(faceless)}: {read}")
    decoded = max([s.end for s in results] + [levels.samples / SAMPLE_RATE if levels is not None else 0.0])
    if decoded and info.duration - decoded > max(0.5, 0.1 * info.duration):
        warnings.append(f"decoding ended at {decoded:.1f} s of the {info.duration:.1f} s the file states: "
                        "is it truncated?")
    duration = max([s.end for s in results], default=levels.samples / SAMPLE_RATE if levels is not None else 0.0)
    text = " ".join(s.text for s in results if s.text).strip()
    return FileTranscript(str(path), text, task, round(duration, 3), results, timings, _rtf(started, duration),
                          found, warnings)


def _spans(levels: segments.Levels, video: bool) -> list[tuple[int, int]]:
    """One sample range per utterance (cut at pauses of `UTTERANCE_PAUSE` seconds, as the live stream cuts
    them), longer ones cut to at most 24 s at their longest pause; with video, on frame boundaries."""
    spans, f = [], segments.FRAME
    for a, b in segments.utterances(levels.db, levels.samples, UTTERANCE_PAUSE):
        spans += [(a + x, a + y) for x, y in segments.split_levels(levels.db[a // f:-(-b // f)], b - a,
                                                                  MAX_SEGMENT_SECONDS)]
    if video:
        edges = sorted({min(round(x / SAMPLES_PER_VIDEO_FRAME) * SAMPLES_PER_VIDEO_FRAME, levels.samples)
                        for span in spans for x in span})
        spans = [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
    return spans


def _rtf(started: float, duration: float) -> float:
    return round((time.perf_counter() - started) / duration, 4) if duration > 0 else 0.0


Progress = Callable[[str, int, int], None]


def progress_bar(enabled: bool, piped_lines: bool = False) -> Progress | None:
    """A one-line progress bar on stderr for a terminal: `show(stage, done, total)`. When stderr is not
    a terminal: nothing, or with `piped_lines` a plain line at every tenth of the work (for logs of
    long runs)."""
    if not enabled:
        return None
    current = {"stage": None, "tenth": -1}
    if not sys.stderr.isatty():
        if not piped_lines:
            return None

        def log(stage: str, done: int, total: int) -> None:
            tenth = 10 * done // max(total, 1)
            if (stage, tenth) != (current["stage"], current["tenth"]):
                current["stage"], current["tenth"] = stage, tenth
                print(f"{time.strftime('%H:%M:%S')} {stage} {done}/{total}", file=sys.stderr, flush=True)

        return log

    def show(stage: str, done: int, total: int) -> None:
        if current["stage"] not in (None, stage):
            sys.stderr.write("\n")
        current["stage"] = stage
        width, total = 30, max(total, done, 1)
        filled = int(width * done / total)
        sys.stderr.write(f"\r{stage:>12s} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
