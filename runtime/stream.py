"""Live recognition, in the style of sherpa-onnx's stream object: a live app feeds audio chunks (and
camera frames) as they arrive and asks for results; the same object serves a microphone, a file played
at real-time pace or a network socket.

    stream = recognizer.create_stream()
    stream.accept_waveform(sample_rate, chunk)    # float32 mono, any rate, any chunk size
    stream.accept_frame(rgb_frame, timestamp)     # optional: video frames for AVSR
    for result in stream.decode(): ...            # new partial and final results
    stream.input_finished(); stream.decode()      # flush the last utterance

Utterances are found by a causal voice-activity detector (`vad.py`: energy or silero) on 40 ms frames (one video frame
each, so cuts fall on frame boundaries). The stream's timeline is split into contiguous spans, each an
utterance (decoded: one final result, and partial results while it grows) or a silence (skipped), so
every sample received belongs to exactly one span: nothing is lost or counted twice at chunk borders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import lips
from .decoding import DecodingOptions
from .errors import UsageError
from .features import SAMPLE_RATE, VIDEO_FPS
from .prompt import TASK_MODALITIES
from .vad import FRAME, make_vad

if TYPE_CHECKING:
    from .lip_cropper import LiveLipCropper
    from .recognizer import Recognizer


@dataclass
class StreamOptions:
    """How a stream cuts utterances (seconds) and how often it reports partial results."""

    min_silence: float = 0.6  # a pause this long ends an utterance
    padding: float = 0.3  # silence kept before and after the speech of an utterance
    max_leading_silence: float = 1.0  # at most this much silence is kept before an utterance's speech
    max_utterance: float = 24.0  # longer speech is cut at its quietest point (the model's window)
    partial_every: float = 1.0  # 0: no partial results (and no early decode at a pause)
    vad: str = "energy"  # or "silero" (runtime/vad.py)


@dataclass
class StreamResult:
    """Text of one utterance: `final` False while it may still change. Times in seconds from the
    stream's first sample; `samples` the [start, end) sample range decoded at 16 kHz."""

    text: str
    start: float
    end: float
    final: bool
    task: str
    samples: tuple[int, int] = (0, 0)
    timings: dict[str, float] = field(default_factory=dict, repr=False)
    speech_end: float = 0.0  # where the utterance's speech ended (so far), seconds: latency is measured from it


class _Resampler:
    """Chunked resampling to 16 kHz mono float32 with PyAV (state kept across chunks)."""

    def __init__(self, rate: int) -> None:
        import av

        self.rate = rate
        self._av = av
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def __call__(self, samples: np.ndarray | None) -> np.ndarray:
        if samples is None:
            frames = self._resampler.resample(None)
        else:
            frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None]), format="flt", layout="mono")
            frame.sample_rate = self.rate
            frames = self._resampler.resample(frame)
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


class Stream:
    """One live input: audio chunks (and video frames) in, partial and final results out."""

    def __init__(self, recognizer: "Recognizer", task: str | None = None, options: DecodingOptions | None = None,
                 stream_options: StreamOptions | None = None, cropper: "LiveLipCropper | None" = None) -> None:
        if not any("audio" in TASK_MODALITIES[t] for t in recognizer.tasks):
            raise UsageError(f"a stream finds utterances in the audio; this model does {', '.join(recognizer.tasks)}")
        if task is not None and task not in recognizer.tasks:
            raise UsageError(f"the model supports {', '.join(recognizer.tasks)}, not {task}")
        if task == "vsr":
            raise UsageError("a stream needs audio to find utterances: use task asr or avsr")
        self.recognizer, self.task = recognizer, task
        self.options = options or DecodingOptions()
        self.vad = stream_options or StreamOptions()
        self._cropper = cropper
        self.sample_rate: int | None = None  # of the input; set by the first chunk
        self._resampler: _Resampler | None = None
        self._audio: list[np.ndarray] = []  # 16 kHz chunks from sample `_base` on
        self._base = 0  # sample index of the first buffered sample
        self.samples_received = 0  # 16 kHz samples accepted so far
        self.finished = False
        self._crops: dict[int, np.ndarray] = {}  # video frame index -> 96x96 mouth ROI
        self._next_frame = 0
        self.frames_received = 0
        # VAD state: frames judged, level history, the open span
        self._judged = 0  # VAD frames judged (from sample 0)
        self._judge = make_vad(self.vad.vad)
        self._span_start = 0  # sample where the open span starts
        self._speech_end: int | None = None  # sample where the open utterance's speech last ended
        self._last_partial = 0
        self._early: tuple | None = None  # (key, Transcript) of the decode made when the pause began
        self.silent_samples = 0  # samples of closed spans without speech
        self.spans: list[tuple[int, int, bool]] = []  # closed spans: (start, end, decoded)

    # ---- input ----------------------------------------------------------------------------------
    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """Append mono audio at `sample_rate` (resampled to 16 kHz; one rate per stream)."""
        if self.finished:
            raise UsageError("the stream's input is finished")
        samples = np.asarray(samples, np.float32)
        if samples.ndim != 1:
            raise UsageError(f"accept_waveform takes mono samples (1-D), got shape {samples.shape}")
        if sample_rate <= 0:
            raise UsageError(f"invalid sample rate {sample_rate}")
        if self.sample_rate is None:
            self.sample_rate = sample_rate
            self._resampler = _Resampler(sample_rate) if sample_rate != SAMPLE_RATE else None
        elif sample_rate != self.sample_rate:
            raise UsageError(f"the stream's sample rate is {self.sample_rate} Hz, got {sample_rate}")
        if self._resampler is not None:
            samples = self._resampler(samples)
        self._append(samples)

    def accept_frame(self, frame: np.ndarray, timestamp: float | None = None) -> np.ndarray | None:
        """Append one RGB video frame [H, W, 3] shown at `timestamp` seconds (default: the next frame at
        25 fps). Other frame rates are mapped onto 25 fps by dropping or repeating frames. Returns the
        frame's 96x96 mouth crop (None: not used, or no face seen yet)."""
        if self.finished:
            raise UsageError("the stream's input is finished")
        if "video" not in TASK_MODALITIES[self.task or ("avsr" if "avsr" in self.recognizer.tasks else "asr")]:
            return None
        index = self._next_frame if timestamp is None else int(round(timestamp * VIDEO_FPS))
        if index < self._next_frame:
            return None  # a faster camera: this frame's slot is taken
        if self._cropper is None:
            from .lip_cropper import LiveLipCropper

            self._cropper = LiveLipCropper()
        crop = self._cropper.push(np.asarray(frame))
        self.frames_received += 1
        if crop is not None:
            for i in range(self._next_frame, index + 1):  # a slower camera: repeat the frame
                self._crops[i] = crop
        self._next_frame = index + 1
        return crop

    def input_finished(self) -> None:
        """No more input: the next `decode()` closes the last span."""
        if self._resampler is not None and not self.finished:
            self._append(self._resampler(None))
        self.finished = True

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._audio.append(samples)
            self.samples_received += len(samples)

    # ---- recognition ----------------------------------------------------------------------------
    def decode(self) -> list[StreamResult]:
        """Judge the audio received since the last call and decode what is ready: a final result for
        every utterance that ended, a partial one for the utterance still open (every `partial_every`)."""
        results = []
        vad = self.vad
        while (self._judged + 1) * FRAME <= self.samples_received:
            end = (self._judged + 1) * FRAME
            speech = self._judge(self._buffer(self._judged * FRAME, end))
            self._judged += 1
            if speech:
                if self._speech_end is None:
                    self._last_partial = end
                self._speech_end = end
            elif self._speech_end is None:  # silence: what lies before the last `padding` is a span of its own
                if end - self._span_start > _samples(vad.max_leading_silence):
                    self._close(_frame_floor(end - _samples(vad.padding)), False)
            elif end - self._speech_end >= _samples(vad.min_silence):
                results.append(self._close(_frame_floor(self._speech_end + _samples(vad.padding)), True))
            if self._speech_end is not None and end - self._span_start >= _samples(vad.max_utterance):
                cut = self._quietest_cut(end)
                self._speech_end = cut  # the speech goes on past the cut
                results.append(self._close(cut, True))
                self._speech_end = end
        if self.finished and self._span_start < self.samples_received:
            results.append(self._close(self.samples_received, self._speech_end is not None))
        elif self._speech_end is not None and vad.partial_every > 0:
            cut = _frame_floor(self._speech_end + _samples(vad.padding))
            if self._judged * FRAME >= cut:  # a pause began: decode now what the final will be if it lasts
                if self._early is None or self._early[0][:2] != (self._span_start, cut):
                    results.append(self._recognise(self._span_start, cut, final=False))
            elif self._speech_end == self._judged * FRAME and \
                    self._judged * FRAME - self._last_partial >= _samples(vad.partial_every):  # while speaking
                self._last_partial = self._judged * FRAME
                results.append(self._recognise(self._span_start, self._last_partial, final=False))
        return [r for r in results if r is not None]

    def _quietest_cut(self, end: int) -> int:
        """A cut for an utterance that reached the model's window: its quietest frame in the second half."""
        first = (self._span_start + end) // 2 // FRAME
        frames = range(first, end // FRAME)
        levels = [np.mean(self._buffer(i * FRAME, (i + 1) * FRAME) ** 2) for i in frames]
        return frames[int(np.argmin(levels))] * FRAME

    def _close(self, cut: int, speech: bool) -> StreamResult | None:
        """End the open span at sample `cut`: decode it if it holds speech; drop buffered input before it."""
        start, cut = self._span_start, max(min(cut, self.samples_received), self._span_start)
        if cut == start:
            return None
        result = self._recognise(start, cut, final=True) if speech else None
        self._early = None
        if not speech:
            self.silent_samples += cut - start
        if not speech and self.spans and not self.spans[-1][2] and self.spans[-1][1] == start:
            self.spans[-1] = (self.spans[-1][0], cut, False)  # one entry for a long silence
        else:
            self.spans.append((start, cut, speech))
        self._span_start, self._speech_end = cut, None
        self._trim(cut)
        return result

    def _recognise(self, start: int, end: int, final: bool) -> StreamResult | None:
        """Decode samples [start, end) with the crops known for them. The decode made when a pause began
        is kept: the final of the same samples and crops reuses it, so a final costs no model time."""
        audio = self._buffer(start, end)
        first, last = start // FRAME, -(-end // FRAME)
        found = [self._crops.get(i) for i in range(first, last)]
        known = [i for i, c in enumerate(found) if c is not None]
        frames = None
        if known:  # frames without a crop (not arrived, no face yet) take the nearest crop
            rois = np.stack([found[min(known, key=lambda k: abs(k - i))] for i in range(len(found))])
            frames = lips.normalize_rois(rois)
        task = self.task
        if task is None:
            task = "avsr" if frames is not None and "avsr" in self.recognizer.tasks else "asr"
        elif "video" in TASK_MODALITIES[task] and frames is None:
            if "asr" not in self.recognizer.tasks:
                return None
            task = "asr"  # no face in this utterance: fall back to audio alone
        if task == "asr":
            frames = None
        key = (start, end, task, len(known))
        if self._early is not None and self._early[0] == key:
            out = self._early[1]
        else:
            out = self.recognizer.transcribe(audio, frames, task, self.options)
            self._early = (key, out) if not final else None
        speech_end = min(self._speech_end if self._speech_end is not None else end, end)
        return StreamResult(out.text, round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3), final, task,
                            (start, end), out.timings, round(speech_end / SAMPLE_RATE, 3))

    def _buffer(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) of the stream (they must still be buffered)."""
        if len(self._audio) > 1:
            self._audio = [np.concatenate(self._audio)]
        return self._audio[0][start - self._base:end - self._base] if self._audio else np.zeros(0, np.float32)

    def _trim(self, upto: int) -> None:
        if self._audio and upto > self._base:
            whole = np.concatenate(self._audio)
            self._audio = [whole[upto - self._base:]]
            self._base = upto
        for i in [i for i in self._crops if i < upto // FRAME]:
            del self._crops[i]


def _samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def _frame_floor(sample: int) -> int:
    return max(sample // FRAME * FRAME, 0)
