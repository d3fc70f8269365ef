"""Training data for the demo model: manifest rows -> (audio, mouth ROIs, token ids) held in memory,
augmented per draw (noise at a random SNR, SpecAugment, mouth-crop jitter and flips) and padded into batches.

Features come from the runtime's own functions (`audio_encoder_input`, the crop cache), so training
sees exactly what inference sees.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from smop_edge.runtime import crop_cache, features, lips, media
from smop_edge.runtime.features import VIDEO_FPS
from smop_edge.runtime.prompt import TASK_MODALITIES
from smop_edge.runtime.tokenizer import TextTokenizer

from . import noise
from .corpus import read_manifest


@dataclass
class Example:
    """One utterance in memory: 16 kHz audio aligned to the video (640 samples a frame), gray 96x96
    mouth ROIs [T, 96, 96] uint8 (none for audio-only examples), the transcript's token ids, and, where
    known, each word's (start, end, word index) in samples."""

    audio: np.ndarray
    rois: np.ndarray
    ids: list[int]
    text: str
    spans: list[tuple[int, int, int]] | None = None


def _load(args: tuple[str, str, bool]) -> tuple[np.ndarray, np.ndarray | None]:
    """(audio, gray ROIs) of one clip; ROIs None when the face was not found, empty when `video` is off."""
    path, cache, video = args
    if not video:  # the audio of a 25 fps clip is cut to its frames as below, so both loads give the same samples
        info, audio = media.probe(path), media.read_audio(path)
        if info.video_frames and info.source_fps == VIDEO_FPS:
            audio = features.align_audio_to_video(audio, info.video_frames)
        return audio, np.zeros((0, 0, 0), np.uint8)
    rois, found = crop_cache.mouth_rois(path, cache)
    audio = media.read_audio(path)
    if not found:
        return audio, None
    gray = np.clip(np.rint(lips.to_gray(rois)), 0, 255).astype(np.uint8)
    return features.align_audio_to_video(audio, len(gray)), gray


def load_examples(manifest: str, tokenizer: TextTokenizer, cache: str | None = None, workers: int = 1,
                  progress: Callable[[int, int], None] | None = None, limit: int | None = None,
                  video: bool = True) -> list[Example]:
    """The rows of `manifest` (the first `limit`) with their audio and mouth ROIs, cropped once into
    `cache` (default: crops/ next to the manifest, where `eval` looks too); rows where no face was
    found are dropped. `video` off: audio only, nothing cropped (for runs that never train on video)."""
    rows = read_manifest(manifest)[:limit]
    cache = cache or str(crop_cache.beside(manifest))
    jobs = [(row["file"], cache, video) for row in rows]
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    loaded = pool.imap(_load, jobs, chunksize=4) if pool else map(_load, jobs)
    out = []
    try:
        for i, (row, (audio, rois)) in enumerate(zip(rows, loaded), 1):
            if rois is not None:
                out.append(Example(audio, rois, tokenizer.encode(row["text"]), row["text"]))
            if progress:
                progress(i, len(rows))
    finally:
        if pool:
            pool.terminate()
    return out


@dataclass
class Augment:
    """Per-draw augmentation: noise with probability `p_noise` at an SNR in `snr` dB (babble, white,
    pink), SpecAugment masks, a random 88x88 window of the 96x96 ROI, flips, contrast and brightness."""

    p_noise: float = 0.7
    snr: tuple[float, float] = (-7.5, 20.0)
    kinds: tuple[str, ...] = ("babble", "babble", "white", "pink")
    jitter: bool = True

    def audio(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p_noise:
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            x = noise.mix_at_snr(x, noise.noise_like(kind, len(x), rng, split="train"), rng.uniform(*self.snr))
        return x  # no level change: the waveform is normalised per utterance anyway

    def spectrogram(self, mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """SpecAugment: two frequency bands (up to 10 mel bins) and two stretches of time (up to 5 %
        of the frames each) set to the utterance's mean."""
        mel = mel.copy()
        fill = mel.mean()
        for _ in range(2):
            width = int(rng.integers(0, 11))
            start = int(rng.integers(0, mel.shape[0] - width + 1))
            mel[start:start + width] = fill
            width = int(rng.integers(0, max(1, mel.shape[1] // 20) + 1))
            start = int(rng.integers(0, mel.shape[1] - width + 1))
            mel[:, start:start + width] = fill
        return mel

    def tokens(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """SpecAugment's masks on a frozen encoder's cached tokens [n, D] (its input masks would need the
        encoder): two stretches of time (up to 5 % of the tokens each, at least one) and two bands of
        channels (up to 10 % of D) set to the utterance's mean token."""
        x = x.clone()
        fill = x.mean(0)
        n, d = x.shape
        for _ in range(2):
            width = int(rng.integers(0, max(1, n // 20) + 1))
            start = int(rng.integers(0, n - width + 1))
            x[start:start + width] = fill
            width = int(rng.integers(0, d // 10 + 1))
            start = int(rng.integers(0, d - width + 1))
            x[:, start:start + width] = fill[start:start + width]
        return x

    def video(self, rois: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        off = (lips.ROI_SIZE - lips.CROP_SIZE) // 2
        dy, dx = (rng.integers(0, 2 * off + 1, 2) if self.jitter else (off, off))
        crop = rois[:, dy:dy + lips.CROP_SIZE, dx:dx + lips.CROP_SIZE].astype(np.float32) / 255.0
        if self.jitter and rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        if self.jitter:  # contrast and brightness
            crop = (crop - crop.mean()) * rng.uniform(0.7, 1.3) + crop.mean() + rng.uniform(-0.1, 0.1)
        return ((crop - lips.PIXEL_MEAN) / lips.PIXEL_STD).astype(np.float32)


@dataclass
class Batch:
    """Padded tensors for one task: mel [B, n_mels, F] + mask, frames [B, T, 88, 88] + padding mask
    (True = padded), kept audio frames / video frames per example, the target ids, the word spans
    when every example has them, and for batches with video the clean audio's mel + mask (the teacher
    input of the framewise video loss)."""

    task: str
    mel: torch.Tensor | None
    mel_mask: torch.Tensor | None
    audio_keep: list[int]
    frames: torch.Tensor | None
    frames_pad: torch.Tensor | None
    video_len: list[int]
    ids: list[list[int]]
    spans: list[list[tuple[int, int, int]]] | None = None
    clean_mel: torch.Tensor | None = None
    clean_mel_mask: torch.Tensor | None = None
    clean_keep: list[int] | None = None


def _pad_mels(mels: list[np.ndarray], n_mels: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """[B, n_mels, longest] zero-padded + mask (True = real frame); (None, None) for no mels."""
    if not mels:
        return None, None
    width = max(m.shape[1] for m in mels)
    mel = torch.zeros(len(mels), n_mels, width)
    mask = torch.zeros(len(mels), width, dtype=torch.bool)
    for i, m in enumerate(mels):
        mel[i, :, : m.shape[1]] = torch.from_numpy(m)
        mask[i, : m.shape[1]] = True
    return mel, mask


def make_batch(examples: list[Example], task: str, n_mels: int, augment: Augment | None,
               rng: np.random.Generator, with_audio: bool = True) -> Batch:
    """Features for `task`'s modalities only (ASR batches skip the video encoder's input and VSR the
    audio's, apart from the clean teacher mel of batches with video). `with_audio` off: no mel at all (the
    frozen encoder's tokens come from an `AudioTokenCache`)."""
    mods = TASK_MODALITIES[task] if with_audio else tuple(m for m in TASK_MODALITIES[task] if m != "audio")
    mels, keeps, vids, clean, clean_keeps = [], [], [], [], []
    for ex in examples:
        if "audio" in mods:
            audio = augment.audio(ex.audio, rng) if augment else ex.audio
            mel, keep = features.audio_encoder_input(audio, n_mels, faithful=False)
            mels.append(augment.spectrogram(mel, rng) if augment else mel)
            keeps.append(keep)
        if "video" in mods:
            vids.append(augment.video(ex.rois, rng) if augment else lips.normalize_rois(ex.rois))
            if with_audio:
                mel, keep = features.audio_encoder_input(ex.audio, n_mels, faithful=False)
                clean.append(mel)
                clean_keeps.append(keep)
    mel, mel_mask = _pad_mels(mels, n_mels)
    frames = frames_pad = None
    if vids:
        length = max(len(v) for v in vids)
        frames = torch.zeros(len(vids), length, lips.CROP_SIZE, lips.CROP_SIZE)
        frames_pad = torch.ones(len(vids), length, dtype=torch.bool)
        for i, v in enumerate(vids):
            frames[i, : len(v)] = torch.from_numpy(np.ascontiguousarray(v))
            frames_pad[i, : len(v)] = False
    spans = [ex.spans for ex in examples] if all(ex.spans is not None for ex in examples) else None
    return Batch(task, mel, mel_mask, keeps, frames, frames_pad, [len(v) for v in vids],
                 [ex.ids for ex in examples], spans, *_pad_mels(clean, n_mels), clean_keeps)


def batches(n_examples: int, lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch of index batches, grouping examples of similar length (less padding), in random order."""
    order = np.argsort(np.asarray(lengths) + rng.uniform(0, 10, n_examples), kind="stable")
    groups = [order[i:i + batch_size].tolist() for i in range(0, n_examples, batch_size)]
    rng.shuffle(groups)
    return groups
