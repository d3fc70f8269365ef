"""Audio-only training utterances composed on the fly from a bank of single spoken words, with every
word's start and end known exactly.

The fixed audio-visual corpus is small enough (about an hour) for the decoder to memorise it while the
encoder never learns the words. Composed utterances are new at every draw (voice, speaker variant,
words, pauses, channel), and their word spans give a framewise word label for the encoder tokens, which
teaches the encoder the words in a few hundred steps. The bank holds, per training voice (and the
audio-only piper, pico and kokoro voices) and speaker variant (a speaking pace and a pitch shift),
each word of the domain spoken once (~30 min to build on 2 cores, most of it Kokoro's).
"""

from __future__ import annotations

import functools
import multiprocessing
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smop_edge.runtime.features import SAMPLE_RATE

from . import speech_synth
from .corpus import WORDS, sample_words, spoken_form

SILENCE = len(WORDS)  # the framewise label of a token no word covers
VARIANTS = 6  # speaker variants (pace, pitch) per voice
ENGINE_VARIANTS = {"kokoro": 2}  # fewer for Kokoro: 27 voices, ~0.8 s per word on one core
# The pace of a variant: the mean length of its words (trimmed, seconds), reached through the engine's
# rate, so that every engine spans the same range (at their default rates piper's words last 0.26 s,
# flite's 0.34-0.36, festival's 0.34, pico's 0.37-0.40, Kokoro's 0.43-0.57). People say letters one by one
# slower and higher than the classic engines: real isolated words last 0.46-0.64 s (median per source),
# and a model trained on rates 0.6-1.25 of the engines' defaults read real voices best sped up 1.2x and
# 3 semitones lower (53 -> 44 % WER, test-time sox); trained on rates 0.5-1.05 (words 0.34-0.72 s) and
# -2..+4 semitones, it read them at 37.6 %. The rate stays within RATE_LIMITS (engines sound broken beyond).
WORD_SECONDS = (0.34, 0.72)
PITCH = (-2.0, 4.0)
RATE_LIMITS = (0.4, 2.0)
# Lead and tail silence (s): real clips often start late (KLettres: 0.8 s; trimmed, WER 81 -> 49 %).
LEAD, TAIL = (0.0, 1.0), (0.0, 0.8)
SINGLE_SHARE = 0.25  # share of composed utterances that are one isolated word
# Engines are drawn first, so the many espeak variants do not drown the other engines' voices.
ENGINE_SHARE = {"flite": 0.25, "festival": 0.15, "espeak": 0.3, "piper": 0.05, "pico": 0.05, "kokoro": 0.2}
# The bank's voices: the training voices, then those that only speak audio (appended, so the variant
# parameters of the others, drawn from a voice's position here, stay as they were).
VOICES = speech_synth.TRAIN_VOICES + speech_synth.AUDIO_ONLY_VOICES


def trim(audio: np.ndarray, threshold_db: float = -35.0, margin: float = 0.01) -> np.ndarray:
    """`audio` without its leading and trailing silence (10 ms windows quieter than `threshold_db`
    below the loudest), keeping `margin` seconds on each side."""
    win = SAMPLE_RATE // 100
    n = len(audio) // win
    if n == 0:
        return audio
    energy = np.sqrt((audio[: n * win].reshape(n, win) ** 2).mean(axis=1)) + 1e-9
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > threshold_db)
    pad = int(margin * SAMPLE_RATE)
    return audio[max(0, loud[0] * win - pad): min(len(audio), (loud[-1] + 1) * win + pad)]


def _file_name(voice: speech_synth.Voice, variant: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", voice.id) + f"-{variant}.npz"


def _variant_params(voice: speech_synth.Voice, variant: int, seed: int) -> tuple[float, float]:
    """The (mean word length in seconds, pitch in semitones) of one speaker variant, fixed by (seed,
    voice, variant)."""
    rng = np.random.default_rng([seed, VOICES.index(voice), variant])
    return float(rng.uniform(*WORD_SECONDS)), float(rng.uniform(*PITCH))


@functools.lru_cache(maxsize=None)
def _natural_seconds(voice: speech_synth.Voice) -> float:
    """The mean length of `voice`'s words (trimmed) at the engine's default rate."""
    return float(np.mean([len(trim(speech_synth.synthesize(spoken_form(w, voice.zed), voice)[0]))
                          for w in WORDS])) / SAMPLE_RATE


def _rate_for(voice: speech_synth.Voice, seconds: float) -> float:
    """The engine rate at which `voice`'s words last about `seconds` on average."""
    return float(np.clip(_natural_seconds(voice) / seconds, *RATE_LIMITS))


def _is_current(path: Path, params: tuple[float, float]) -> bool:
    """Whether the bank file `path` exists and was made with `params` (older files carry none)."""
    if not path.exists():
        return False
    with np.load(path) as data:
        return "params" in data.files and np.allclose(data["params"], params)


def _variants(voice: speech_synth.Voice, variants: int) -> range:
    """The speaker variants of `voice` in a bank of `variants` per voice (fewer for slow engines)."""
    return range(min(variants, ENGINE_VARIANTS.get(voice.engine, variants)))


def _speak_variant(voice: speech_synth.Voice, variant: int, seed: int, out: Path) -> None:
    """Every word by one (voice, variant): synthesised, pitch-shifted together, trimmed, saved."""
    seconds, pitch = _variant_params(voice, variant, seed)
    rate = _rate_for(voice, seconds)
    gap = np.zeros(SAMPLE_RATE // 4, np.float32)
    clips = [speech_synth.synthesize(spoken_form(w, voice.zed), voice, rate)[0] for w in WORDS]
    # one sox call for the whole variant: the words joined with gaps, shifted, then cut apart again
    joined = np.concatenate([np.concatenate([gap, c]) for c in clips] + [gap])
    shifted = speech_synth.Channel(pitch=pitch).apply(joined) * 10 ** (3 / 20)  # Channel peaks at -3 dB
    bounds = np.cumsum([0] + [len(gap) + len(c) for c in clips])
    words = [trim(shifted[b: b + len(gap) + len(c)]) for b, c in zip(bounds, clips)]
    path = out / _file_name(voice, variant)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.concatenate(words), lengths=np.array([len(w) for w in words]),
             params=np.array([seconds, pitch]), rate=rate)
    tmp.replace(path)


def _speak_voice(args: tuple[speech_synth.Voice, list[int], int, str]) -> int:
    """The given variants of one voice, in one process (its pace at rate 1 is measured once); returns
    how many were made."""
    voice, variants, seed, out = args
    for k in variants:
        _speak_variant(voice, k, seed, Path(out))
    return len(variants)


def build(out: str | Path, seed: int = 0, workers: int = 1, voices: list[speech_synth.Voice] | None = None,
          variants: int = VARIANTS, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the bank of the training `voices` (default: all) into `out`, one file per voice and
    variant (files already made with the same pace and pitch are kept, so a rerun resumes), and return `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    voices = voices or VOICES
    if not set(voices) <= set(VOICES):
        raise ValueError("the word bank is made of training voices only")
    pending = {voice: [k for k in _variants(voice, variants)
                       if not _is_current(out / _file_name(voice, k), _variant_params(voice, k, seed))]
               for voice in voices}
    jobs = [(voice, ks, seed, str(out)) for voice, ks in pending.items() if ks]
    total = sum(len(_variants(voice, variants)) for voice in voices)
    done = total - sum(len(ks) for ks in pending.values())
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for made in (pool.imap_unordered(_speak_voice, jobs) if pool else map(_speak_voice, jobs)):
            done += made
            if progress:
                progress(done, total)
    finally:
        if pool:
            pool.terminate()
    return out


@dataclass
class Composed:
    """One composed utterance: 16 kHz audio, transcript, and each word's (start, end, word index) in samples."""

    audio: np.ndarray
    text: str
    spans: list[tuple[int, int, int]]


class WordBank:
    """The bank in memory: `words[(voice, variant)]` = one clip per word of WORDS."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.words: dict[tuple[str, int], list[np.ndarray]] = {}
        for voice in VOICES:
            for k in _variants(voice, VARIANTS):
                path = folder / _file_name(voice, k)
                if path.exists():
                    data = np.load(path)
                    self.words[(voice.id, k)] = np.split(data["audio"], np.cumsum(data["lengths"])[:-1])
        if not self.words:
            raise FileNotFoundError(f"no word bank in {folder} (build it with smop_edge.models.word_bank)")
        self.by_engine: dict[str, list[tuple[str, int]]] = {}
        for key in self.words:
            self.by_engine.setdefault(key[0].split(":")[0], []).append(key)
        self.engines = [e for e in ENGINE_SHARE if e in self.by_engine]
        share = np.array([ENGINE_SHARE[e] for e in self.engines])
        self.engine_p = share / share.sum()

    def compose(self, rng: np.random.Generator, max_items: int = 8) -> Composed:
        """A new utterance: an engine, then one of its (voice, variant)s, 1-`max_items` words (a single
        word one time in SINGLE_SHARE: isolated letters are what people are often asked to say) with
        pauses (short or long), lead and tail silence, a channel (EQ, band limit, telephone, level)."""
        engine = self.engines[int(rng.choice(len(self.engines), p=self.engine_p))]
        keys = self.by_engine[engine]
        clips = self.words[keys[int(rng.integers(len(keys)))]]
        words = sample_words(rng, 1 if rng.random() < SINGLE_SHARE else max_items)
        pieces = [np.zeros(int(rng.uniform(*LEAD) * SAMPLE_RATE), np.float32)]
        spans, at = [], len(pieces[0])
        for i, w in enumerate(words):
            index = WORDS.index(w)
            clip = clips[index] * np.float32(10 ** (rng.uniform(-2, 2) / 20))
            spans.append((at, at + len(clip), index))
            pieces.append(clip)
            if i == len(words) - 1:
                pause = rng.uniform(*TAIL)
            else:
                pause = rng.uniform(0.01, 0.08) if rng.random() < 0.4 else rng.uniform(0.1, 0.45)
            pieces.append(np.zeros(int(pause * SAMPLE_RATE), np.float32))
            at += len(clip) + len(pieces[-1])
        channel = speech_synth.Channel.sample(rng, pitch=False)  # the variant already carries its pitch
        return Composed(channel.apply(np.concatenate(pieces)), " ".join(words), spans)


def frame_labels(spans: list[tuple[int, int, int]], n_tokens: int, samples_per_token: int) -> np.ndarray:
    """The word each encoder token's centre falls in (SILENCE where none): framewise targets."""
    centres = (np.arange(n_tokens) + 0.5) * samples_per_token
    labels = np.full(n_tokens, SILENCE, np.int64)
    for start, end, word in spans:
        labels[(centres >= start) & (centres < end)] = word
    return labels


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build the word bank of the demo model's training voices.")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    a = parser.parse_args()
    build(a.out, a.seed, a.workers, progress=lambda d, t: print(f"\r{d}/{t} voice variants", end="", flush=True))
    print()
