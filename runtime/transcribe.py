"""Transcribing media files: decode, choose the task, split long inputs at pauses, recognise each
segment, and report text, segments with timestamps, per-stage timings and the real-time factor."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from . import lips, media, segments
from .decoding import DecodingOptions
from .errors import UnsuitableInputError
from .features import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VIDEO_FPS, align_audio_to_video
from .prompt import TASK_MODALITIES, pick_task
from .recognizer import elapsed_ms

MAX_SEGMENT_SECONDS = 24.0
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


def mouth_frames(path: Path, roi: bool, audio: np.ndarray | None, start: float,
                 progress: Callable[[str, int], None] | None = None) -> tuple[np.ndarray | None, int]:
    """Normalised 88x88 mouth frames of a whole (short) video at 25 fps and how many frames had the
    speaker's face. With `roi` the video already is the mouth ROI (the reference datasets' 96x96 form);
    otherwise the face whose mouth follows `audio` is cropped."""
    mouths = _Mouths(path, roi, audio, start, progress)
    return mouths.frames(0, mouths.n_frames) if mouths.found else (None, 0)


class _Mouths:
    """A file's mouth frames, segment by segment (so a long video's crops are never all in memory): a
    mouth-ROI video (`roi`) read whole as gray 96 x 96 bytes, anything else through `SegmentCropper`."""

    def __init__(self, path: Path, roi: bool, audio: np.ndarray | None, start: float,
                 progress: Callable[[str, int], None] | None) -> None:
        self.rois, self.cropper = None, None
        if roi:
            rois = [lips.resize_rois(f[None])[0] for f in media.iter_video(path, start=start)]
            self.rois = np.stack(rois) if rois else np.zeros((0, lips.ROI_SIZE, lips.ROI_SIZE), np.uint8)
            self.n_frames = self.found = len(rois)
            return
        from .lip_cropper import SegmentCropper

        self.cropper = SegmentCropper(lambda: media.iter_video(path, start=start), audio, progress=progress)
        self.n_frames = self.cropper.n_frames
        whole = self.cropper.speaker(0, self.n_frames)
        self.found = int(whole.found.sum()) if whole is not None else 0

    def frames(self, start: int, end: int) -> tuple[np.ndarray | None, int]:
        """Normalised 88 x 88 frames [start, end) (None without a face) and the frames with the face."""
        if self.rois is not None:
            return lips.normalize_rois(self.rois[start:end]), end - start
        rois, found, _ = self.cropper.crop(start, end)
        return (lips.normalize_rois(rois) if found else None), found


def transcribe_media(rec: Recognises, path: str | Path, task: str | None = None, roi: bool = False,
                     options: DecodingOptions | None = None,
                     progress: Progress | None = None) -> FileTranscript:
    """Recognise one media file; `task` None picks AVSR / ASR / VSR from what the file and model allow.
    Long files go segment by segment (at most 24 s, cut at pauses); in AVSR a segment where the speaker's
    face is missing for most of its frames, or that lies after the video's end, is read from the audio."""
    path = Path(path)
    options = options or DecodingOptions()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    started = time.perf_counter()
    info = media.probe(path)
    wants_video = any("video" in TASK_MODALITIES[t] for t in rec.tasks) and task != "asr"
    wants_audio = any("audio" in TASK_MODALITIES[t] for t in rec.tasks) and task != "vsr"
    audio = mouths = None
    t0 = time.perf_counter()
    if info.has_audio and wants_audio:
        audio = media.read_audio(path, info.start)
        if len(audio) == 0:
            audio = None
    timings["media_decode"] = elapsed_ms(t0)
    found = None
    if info.has_video and wants_video:
        t0 = time.perf_counter()
        expected = int(round(info.duration * VIDEO_FPS))
        mouths = _Mouths(path, roi, audio, info.start,
                         (lambda stage, done: progress(stage, done, expected)) if progress else None)
        timings["lip_crop"] = elapsed_ms(t0)
        found = mouths.found
        if not found:
            warnings.append("no face found in the video")
    decoded = max(len(audio) / SAMPLE_RATE if audio is not None else 0.0,
                  mouths.n_frames / VIDEO_FPS if mouths is not None else 0.0)
    if decoded and info.duration - decoded > max(0.5, 0.1 * info.duration):
        warnings.append(f"decoding ended at {decoded:.1f} s of the {info.duration:.1f} s the file states: "
                        "is it truncated?")
    try:
        task = pick_task(rec.tasks, audio is not None, bool(found), task)
    except UnsuitableInputError as exc:
        raise UnsuitableInputError(f"{path}: {exc}") from None
    need = TASK_MODALITIES[task]
    n_frames = mouths.n_frames if "video" in need else 0
    duration = n_frames / VIDEO_FPS if "video" in need else len(audio) / SAMPLE_RATE
    tail = None  # audio after the video's end: transcribed from audio alone, never dropped
    if "audio" in need and "video" in need:
        full, audio = audio, align_audio_to_video(audio, n_frames)
        if len(full) > len(audio) + SAMPLES_PER_VIDEO_FRAME and not segments.is_silent(full[len(audio):]):
            span = f"{len(audio) / SAMPLE_RATE:.1f}-{len(full) / SAMPLE_RATE:.1f} s"
            if "asr" in rec.tasks:
                tail, duration = full[len(audio):], len(full) / SAMPLE_RATE
                warnings.append(f"the video ends before the audio: {span} transcribed from the audio alone")
            else:
                warnings.append(f"the video ends before the audio: {span} not transcribed (the model has no ASR)")
        del full
    if "audio" in need and segments.is_silent(audio) and "video" not in need:
        warnings.append("no speech found (silence)")
        return FileTranscript(str(path), "", task, duration, [], timings, _rtf(started, duration), found, warnings)
    jobs = [(a, b, task, 0) for a, b in _spans(audio if "audio" in need else None, n_frames)]
    if tail is not None:
        jobs += [(a, b, "asr", len(audio)) for a, b in _spans(tail, 0)]
    results: list[Segment] = []
    faceless: list[str] = []
    for i, (a, b, seg_task, offset) in enumerate(jobs):
        seg_frames = None
        if "video" in TASK_MODALITIES[seg_task]:
            t0 = time.perf_counter()
            f0, f1 = a // SAMPLES_PER_VIDEO_FRAME, b // SAMPLES_PER_VIDEO_FRAME
            seg_frames, seg_found = mouths.frames(f0, f1)
            timings["lip_crop"] = round(timings["lip_crop"] + elapsed_ms(t0), 3)
            if seg_found < FACE_SHARE * (f1 - f0):
                faceless.append(f"{a / SAMPLE_RATE:.1f}-{b / SAMPLE_RATE:.1f} s")
                seg_task = "asr" if "audio" in need and "asr" in rec.tasks else seg_task
        seg_audio = (audio if not offset else tail)[a:b] if "audio" in TASK_MODALITIES[seg_task] else None
        text = ""
        if "video" not in TASK_MODALITIES[seg_task] or seg_frames is not None:
            out = rec.transcribe(seg_audio, seg_frames if "video" in TASK_MODALITIES[seg_task] else None,
                                 seg_task, options)
            text = out.text
            for stage, ms in getattr(out, "timings", {}).items():
                timings[stage] = round(timings.get(stage, 0.0) + ms, 3)
        results.append(Segment(round((offset + a) / SAMPLE_RATE, 3), round((offset + b) / SAMPLE_RATE, 3), text,
                               None if seg_task == task else seg_task))
        if progress:
            progress("segments", i + 1, len(jobs))
    if faceless:
        read = "read from the audio alone" if "audio" in need and "asr" in rec.tasks else "not transcribed"
        warnings.append(f"the speaker's face is missing for most of {', '.join(faceless)}: {read}")
    text = " ".join(s.text for s in results if s.text).strip()
    return FileTranscript(str(path), text, task, round(duration, 3), results, timings, _rtf(started, duration),
                          found, warnings)


def _spans(audio: np.ndarray | None, n_frames: int) -> list[tuple[int, int]]:
    """Sample ranges of at most 24 s; with video, cut on frame boundaries (640 samples)."""
    if audio is None:
        step = int(MAX_SEGMENT_SECONDS * VIDEO_FPS) * SAMPLES_PER_VIDEO_FRAME
        total = n_frames * SAMPLES_PER_VIDEO_FRAME
        return [(s, min(s + step, total)) for s in range(0, total, step)]
    spans = segments.split(audio, MAX_SEGMENT_SECONDS)
    if n_frames:
        edges = sorted({min(round(x / SAMPLES_PER_VIDEO_FRAME) * SAMPLES_PER_VIDEO_FRAME, len(audio))
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
