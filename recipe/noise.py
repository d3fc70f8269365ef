"""Noise for training augmentation and for `eval`: white, pink, babble (6-10 synthetic talkers reading
sentences at once) or a file, mixed at a signal-to-noise ratio. Torch-free."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from smop_edge.runtime.errors import UsageError
from smop_edge.runtime.features import SAMPLE_RATE

from . import speech_synth

# Babble talkers read these (our own sentences; no digits or letter names, so babble never says a
# word the recogniser should write down).
SENTENCES = [
    "the morning train was late again because of the snow",
    "she carried the heavy basket across the wooden bridge",
    "we should paint the kitchen before the summer ends",
    "my brother likes to read old maps by the window",
    "the garden needs water after such a dry week",
    "please close the door quietly when you leave the room",
    "there were apples and pears on the table by the stove",
    "the children laughed at the clumsy puppy in the yard",
    "a cold wind blew across the harbour all night long",
    "they walked slowly along the river to the market",
    "the teacher asked everyone to bring their own lunch",
    "our neighbours planted roses along the garden wall",
    "the old clock in the hall stopped working last winter",
    "he forgot his umbrella at the station this morning",
    "the soup tasted better with a little more salt",
    "birds were singing loudly in the tall green trees",
]
NOISE_KINDS = ("babble", "white", "pink")


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    spectrum /= np.sqrt(np.maximum(f, 1.0))
    return np.fft.irfft(spectrum, n).astype(np.float32)


@functools.lru_cache(maxsize=4)
def babble(split: str = "test", seconds: float = 60.0, seed: int = 0) -> np.ndarray:
    """A `seconds` long babble track: 6-10 talkers of `split`'s voices (so training babble never uses
    a held-out voice), each reading sentences with short gaps, summed at random levels (+-3 dB)."""
    rng = np.random.default_rng([seed, 7])
    voices = speech_synth.TRAIN_VOICES if split == "train" else speech_synth.TEST_VOICES
    n = int(seconds * SAMPLE_RATE)
    mix = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(6, 11))):
        voice = voices[int(rng.integers(len(voices)))]
        track, length, skip = [], 0, int(rng.uniform(0, 2) * SAMPLE_RATE)  # joined mid-sentence
        while length < n + skip:
            speech, _ = speech_synth.synthesize(SENTENCES[int(rng.integers(len(SENTENCES)))], voice,
                                                rate=float(rng.uniform(0.85, 1.2)))
            speech = speech / (np.sqrt(np.mean(speech ** 2)) + 1e-9)
            gap = np.zeros(int(rng.uniform(0.1, 0.6) * SAMPLE_RATE), np.float32)
            track += [speech, gap]
            length += len(speech) + len(gap)
        mix += np.concatenate(track)[skip:skip + n] * np.float32(10 ** (rng.uniform(-3, 3) / 20))
    return mix / (np.sqrt(np.mean(mix ** 2)) + 1e-9)


def noise_like(kind: str, n: int, rng: np.random.Generator, split: str = "test") -> np.ndarray:
    """`n` samples of noise: `babble`, `white`, `pink`, or the path of an audio file (looped)."""
    if kind == "white":
        return white(n, rng)
    if kind == "pink":
        return pink(n, rng)
    if kind == "babble":
        source = babble(split)
    else:
        path = Path(kind)
        if not path.is_file():
            raise UsageError(f"noise must be one of {', '.join(NOISE_KINDS)} or an audio file; {kind} is neither")
        source = _file_noise(str(path))
    start = int(rng.integers(len(source)))
    reps = int(np.ceil((start + n) / len(source)))
    return np.tile(source, reps)[start:start + n]


@functools.lru_cache(maxsize=4)
def _file_noise(path: str) -> np.ndarray:
    from smop_edge.runtime.media import read_audio

    audio = read_audio(path)
    if not len(audio) or not np.any(audio):
        raise UsageError(f"noise file {path} is silent or empty")
    return audio


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that 10 log10(P_speech / P_noise) = snr_db (powers over the clip)."""
    p_speech = float(np.mean(speech.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2)) or 1.0
    scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return (speech + noise[: len(speech)] * scale).astype(np.float32)
