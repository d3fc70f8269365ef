"""How much an espeak-ng clip depends on what the engine said before and on libc's rand() seed, against
how much two voices differ: the spot check behind the README's "not the espeak-ng fix of bf98ee6".
    .venv/bin/python scripts/espeak_history_check.py
Each synthesis runs in a fork of a freshly initialised engine (as recipe/speech_synth does), optionally
after other requests (the behaviour before bf98ee6) or with another rand() seed."""
from __future__ import annotations

import numpy as np

from smop_edge.recipe.speech_synth import _Espeak, in_fork

REQUESTS = [("seven b four", "en-us+m1", 1.0), ("seven b four", "en-gb-x-rp+f3", 0.8),
            ("nine x two", "en-us+Annie", 1.1)]
HISTORIES = [[("a b c", "en-us+f2", 1.3)],
             [("one two", "en-gb-scotland+m5", 0.7), ("z", "en-us+klatt", 1.0)],
             [("hello there how are you", "en-029+linda", 1.0)] * 3]
SEED_VOICES = ["en-us+m1", "en-us+klatt", "en-gb-x-rp+f3", "en-us+Annie"]


def speak(text: str, voice: str, rate: float, history=(), seed: int = 1) -> np.ndarray:
    """The samples of one request, spoken in a fork after `history`, with rand() seeded `seed` first."""
    engine = _Espeak.get()

    def work() -> np.ndarray:
        for request in history:
            engine._speak(*request)
        return engine._speak(text, voice, rate)[0]

    return in_fork(work, f"espeak-ng died saying {text!r}", seed).astype(np.float32)


def log_spectrogram(audio: np.ndarray) -> np.ndarray:
    """Log magnitude of 512-sample Hann frames, hop 256 (phase-blind, so glottal phase shifts do not count)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, 512)[::256] * np.hanning(512)
    mag = np.abs(np.fft.rfft(frames, axis=1))[:, :256]
    return np.log(mag + 1e-3 * mag.max())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the common length of two arrays."""
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n].ravel(), b[:n].ravel())[0, 1])


def main() -> None:
    for voice in SEED_VOICES:
        base = speak("seven b four", voice, 1.0)
        others = [speak("seven b four", voice, 1.0, seed=s) for s in (2, 3)]
        print(f"rand() seed 2 / 3, {voice}: identical {[np.array_equal(base, o) for o in others]}, "
              f"waveform correlation {[round(correlation(base, o), 3) for o in others]}")
    for text, voice, rate in REQUESTS:
        base = log_spectrogram(speak(text, voice, rate))
        after = [round(correlation(base, log_spectrogram(speak(text, voice, rate, h))), 3) for h in HISTORIES]
        other = round(correlation(base, log_spectrogram(speak(text, "en-us+m2", rate))), 3)
        print(f"{voice} {text!r}: log-spectrogram correlation after other requests {after}, "
              f"with voice en-us+m2 {other}")


if __name__ == "__main__":
    main()
