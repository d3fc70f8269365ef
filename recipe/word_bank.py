"""Audio-only training utterances composed on the fly from a bank of single spoken words, with every
word's start and end known exactly.

The fixed audio-visual corpus is small enough (about an hour) for the decoder to memorise it while the
encoder never learns the words. Composed utterances are new at every draw (voice, speaker variant,
words, pauses, channel), and their word spans give a framewise word label for the encoder tokens, which
teaches the encoder the words in a few hundred steps. The bank holds, per training voice and speaker
variant (a rate and a pitch shift), each word of the domain spoken once (~5 min to build on 2 cores).
"""

from __future__ import annotations

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
VARIANTS = 6  # speaker variants (rate, pitch) per voice
# Speaking rates and pitch shifts (semitones) of the variants (1 = the engine's default). People saying
# letters one by one speak slower and higher than the engines: real voices read best sped up 1.2x and
# 3 semitones lower (test-time sox, 53 -> 44 % WER); trained on 0.5-1.05 and -2..+4 instead of 0.6-1.25
# and -3..+3, the model reads them at 37.6 % instead of 53.0 %.
RATES = (0.5, 1.05)
PITCH = (-2.0, 4.0)
# Lead and tail silence (s): real clips often start late (KLettres: 0.8 s; trimmed, WER 81 -> 49 %).
LEAD, TAIL = (0.0, 1.0), (0.0, 0.8)
SINGLE_SHARE = 0.25  # share of composed utterances that are one isolated word
# Engines are drawn first, so the many espeak variants do not drown flite's and festival's voices.
ENGINE_SHARE = {"flite": 0.35, "festival": 0.25, "espeak": 0.4}


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
    """The (rate, pitch in semitones) of one speaker variant, fixed by (seed, voice, variant)."""
    rng = np.random.default_rng([seed, speech_synth.TRAIN_VOICES.index(voice), variant])
    return float(rng.uniform(*RATES)), float(rng.uniform(*PITCH))


def _is_current(path: Path, params: tuple[float, float]) -> bool:
    """Whether the bank file `path` exists and was made with `params` (older files carry none)."""
    if not path.exists():
        return False
    with np.load(path) as data:
        return "params" in data.files and np.allclose(data["params"], params)


def _speak_variant(args: tuple[speech_synth.Voice, int, int, str]) -> str:
    """Every word by one (voice, variant): synthesised, pitch-shifted together, trimmed, saved."""
    voice, variant, seed, out = args
    rate, pitch = _variant_params(voice, variant, seed)
    gap = np.zeros(SAMPLE_RATE // 4, np.float32)
    clips = [speech_synth.synthesize(spoken_form(w, voice.zed), voice, rate)[0] for w in WORDS]
    # one sox call for the whole variant: the words joined with gaps, shifted, then cut apart again
    joined = np.concatenate([np.concatenate([gap, c]) for c in clips] + [gap])
    shifted = speech_synth.Channel(pitch=pitch).apply(joined) * 10 ** (3 / 20)  # Channel peaks at -3 dB
    bounds = np.cumsum([0] + [len(gap) + len(c) for c in clips])
    words = [trim(shifted[b: b + len(gap) + len(c)]) for b, c in zip(bounds, clips)]
    path = Path(out) / _file_name(voice, variant)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.concatenate(words), lengths=np.array([len(w) for w in words]),
             params=np.array([rate, pitch]))
    tmp.replace(path)
    return voice.id


def build(out: str | Path, seed: int = 0, workers: int = 1, voices: list[speech_synth.Voice] | None = None,
          variants: int = VARIANTS, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the bank of the training `voices` (default: all) into `out`, one file per voice and
    variant (files already made with the same rate and pitch are kept, so a rerun resumes), and return `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    voices = voices or speech_synth.TRAIN_VOICES
    if not set(voices) <= set(speech_synth.TRAIN_VOICES):
        raise ValueError("the word bank is made of training voices only")
    jobs = [(voice, k, seed, str(out)) for voice in voices for k in range(variants)
            if not _is_current(out / _file_name(voice, k), _variant_params(voice, k, seed))]
    total = len(voices) * variants
    done = total - len(jobs)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for _ in (pool.imap_unordered(_speak_variant, jobs) if pool else map(_speak_variant, jobs)):
            done += 1
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
        for voice in speech_synth.TRAIN_VOICES:
            for k in range(VARIANTS):
                path = folder / _file_name(voice, k)
                if path.exists():
                    data = np.load(path)
                    self.words[(voice.id, k)] = np.split(data["audio"], np.cumsum(data["lengths"])[:-1])
        if not self.words:
            raise FileNotFoundError(f"no word bank in {folder} (build it with smop_edge.recipe.word_bank)")
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
