"""Frozen audio-encoder outputs, computed once per utterance: with the pretrained Whisper encoder frozen
(the demo v2 models, as the paper), every step would otherwise recompute the same forward (0.16 s a clip
in faithful mode on 2 cores: 30 s of padded input). Each utterance is encoded clean and `variants` times
with a noise draw (`Augment.audio` at its full noise probability). The cache holds the encoder's frames,
which training reads from memory and compresses as the model's configuration says (models that compress
differently share it). It is written beside the training manifest (one file per audio mode), keyed by each
utterance's samples, so that a resumed run and the next stage (`--init`) recompute nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from smop_edge.models.compression import compress
from smop_edge.models.llama_smop import LlamaSMoP
from smop_edge.runtime import features
from smop_edge.runtime.config import CompressionConfig

from .train_data import Augment, Example


@dataclass
class AudioTokenCache:
    """Audio-encoder frames [n, d] (float16) of each example, in order: `clean[i]` and `noisy[i][variant]`;
    read out as tokens compressed by `compression`."""

    clean: list[torch.Tensor]
    noisy: list[list[torch.Tensor]]
    compression: CompressionConfig

    def draw(self, indices: list[int], p_noise: float, rng: np.random.Generator) -> list[torch.Tensor]:
        """Tokens of `indices`, each a random noisy variant with probability `p_noise`, else clean."""
        out = []
        for i in indices:
            noisy = self.noisy[i] and rng.random() < p_noise
            out.append(self.noisy[i][int(rng.integers(len(self.noisy[i])))] if noisy else self.clean[i])
        return [self._tokens(t) for t in out]

    def clean_tokens(self, indices: list[int]) -> list[torch.Tensor]:
        return [self._tokens(self.clean[i]) for i in indices]

    def _tokens(self, frames: torch.Tensor) -> torch.Tensor:
        return compress(frames.float()[None], self.compression)[0]


def audio_key(audio: np.ndarray) -> str:
    """An utterance's identity in the cache: a digest of its samples (rows dropped or added elsewhere in a
    manifest, or a composed pool of another size, leave the other entries valid)."""
    return hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()[:20]


@torch.inference_mode()
def encode(model: LlamaSMoP, audio: np.ndarray, faithful: bool) -> torch.Tensor:
    """One waveform -> its audio-encoder frames [n, d] (float16) as the runtime's audio mode computes them."""
    mel, keep = features.audio_encoder_input(audio, model.cfg.audio_encoder.mel_bins, faithful)
    return model.encode_audio(torch.from_numpy(mel)[None], keep, faithful)[0].to(torch.float16)


def path_for(manifest: str | Path, faithful: bool) -> Path:
    """Where the cache of a training manifest lives (the frozen encoder is always Whisper tiny.en's)."""
    return Path(manifest).parent / f"audio-tokens-{'faithful' if faithful else 'fast'}.pt"


def load_or_build(path: Path, model: LlamaSMoP, examples: list[Example], faithful: bool, variants: int,
                  augment: Augment, seed: int, progress: Callable[[int, int], None] | None = None,
                  save_every: int = 500) -> AudioTokenCache:
    """The frames of `examples`: read from the cache at `path` (written for the same settings), the missing
    ones encoded clean and `variants` times with noise (`augment` at full noise probability, each draw
    seeded by `seed` and the utterance) and added to it, saved every `save_every` utterances."""
    settings = {"faithful": faithful, "variants": variants, "seed": seed, "stored": "frames"}
    store = torch.load(path, weights_only=True) if path.exists() else {}
    entries = store["entries"] if store.get("settings") == settings else {}
    keys = [audio_key(e.audio) for e in examples]
    todo = {k: e for k, e in zip(keys, examples) if k not in entries}
    noisy_augment = replace(augment, p_noise=1.0)
    for n, (k, ex) in enumerate(todo.items(), 1):
        rng = np.random.default_rng([seed, int(k, 16)])
        entries[k] = [encode(model, ex.audio, faithful)]
        entries[k] += [encode(model, noisy_augment.audio(ex.audio, rng), faithful) for _ in range(variants)]
        if progress:
            progress(n, len(todo))
        if n % save_every == 0 or n == len(todo):  # an interrupted build resumes from here
            tmp = path.with_suffix(".tmp")
            torch.save({"settings": settings, "entries": entries}, tmp)
            tmp.replace(path)
    return AudioTokenCache([entries[k][0] for k in keys], [entries[k][1:] for k in keys], model.cfg.audio_compression)
