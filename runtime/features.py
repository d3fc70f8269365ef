"""Audio front end in numpy: utterance normalisation and Whisper log-mel features.

The torch reference and the runtime both call these functions, so the two paths cannot drift apart.
Equal to transformers' `WhisperFeatureExtractor` (tests compare them within 1e-4).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES_30S = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples: Whisper's fixed window
N_FRAMES_30S = N_SAMPLES_30S // HOP_LENGTH  # 3000 mel frames
ENCODER_FRAMES_PER_SECOND = 50
MIN_ENCODER_FRAMES = 25
VIDEO_FPS = 25
SAMPLES_PER_VIDEO_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640: audio is cut/padded to this per frame
NORMALIZE_EPS = 1e-8


def normalize_waveform(waveform: np.ndarray, eps: float = NORMALIZE_EPS) -> np.ndarray:
    """Zero mean, unit variance over the whole utterance, as the authors' layer_norm(x, x.shape, eps)."""
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {x.shape}")
    return ((x - x.mean()) / np.sqrt(x.var() + eps)).astype(np.float32)


def kept_encoder_frames(num_samples: int) -> int:
    """How many 50 Hz Whisper encoder frames the reference keeps for `num_samples` of 16 kHz audio."""
    return max(int(num_samples / SAMPLE_RATE * ENCODER_FRAMES_PER_SECOND), MIN_ENCODER_FRAMES)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    logstep = 27.0 / np.log(6.4)
    mels = np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) * logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), freq)


@lru_cache(maxsize=8)
def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised triangular mel filter bank, shape [n_fft // 2 + 1, n_mels] (computed once)."""
    n_freqs = n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2)
    edges = _mel_to_hz(mel_points)
    widths = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    falling = -slopes[:, :-2] / widths[:-1]
    rising = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(falling, rising))
    filters *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[None, :]
    filters.setflags(write=False)
    return filters


@lru_cache(maxsize=2)
def _hann(n: int) -> np.ndarray:
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic, as torch/librosa use
    window.setflags(write=False)
    return window


def log_mel(waveform: np.ndarray, n_mels: int = 80, pad_to_30s: bool = True) -> np.ndarray:
    """Whisper log-mel spectrogram [n_mels, frames] (float32).

    With `pad_to_30s` the waveform is zero-padded (or cut) to 30 s first, giving exactly 3000 frames
    as Whisper's feature extractor does (the faithful mode); without it, `len // 160` frames.
    """
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {x.shape}")
    if pad_to_30s:
        x = np.pad(x[:N_SAMPLES_30S], (0, max(0, N_SAMPLES_30S - len(x))))
    if len(x) < N_FFT // 2 + 1:
        x = np.pad(x, (0, N_FFT // 2 + 1 - len(x)))
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP_LENGTH, padded.strides[0])
    )
    power = np.abs(np.fft.rfft(frames * _hann(N_FFT), axis=-1)) ** 2  # [frames, freqs]
    mel = power @ mel_filters(n_mels)  # [frames, mels]
    log_spec = np.log10(np.maximum(mel, 1e-10)).T[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def align_audio_to_video(audio: np.ndarray, n_video_frames: int) -> np.ndarray:
    """Cut or zero-pad audio to exactly 640 samples per 25 fps video frame."""
    n = n_video_frames * SAMPLES_PER_VIDEO_FRAME
    audio = np.asarray(audio, dtype=np.float32)[:n]
    return np.pad(audio, (0, n - len(audio)))


def audio_encoder_input(audio: np.ndarray, n_mels: int, faithful: bool) -> tuple[np.ndarray, int]:
    """16 kHz mono audio -> (log-mel [n_mels, frames], encoder frames to keep).

    Faithful: 30 s padding, as the authors (the audio must not be longer). Fast: unpadded, at least
    the 25 encoder frames the reference always keeps.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {audio.shape}")
    if faithful and len(audio) > N_SAMPLES_30S:
        raise ValueError("faithful mode takes at most 30 s of audio; split longer input")
    mel = log_mel(normalize_waveform(audio), n_mels, pad_to_30s=faithful)
    if not faithful and mel.shape[1] < 2 * MIN_ENCODER_FRAMES:
        mel = np.pad(mel, ((0, 0), (0, 2 * MIN_ENCODER_FRAMES - mel.shape[1])))
    return mel, kept_encoder_frames(len(audio))
