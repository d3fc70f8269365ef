"""Shared fixtures: a small base tokenizer and tiny checkpoints with the official key names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smop_edge.models import zoo
from smop_edge.runtime.config import ModelConfig
from smop_edge.models.tokenizer_builder import train_base_tokenizer

N_ADDED = 5


@pytest.fixture(scope="session")
def base_tokenizer(tmp_path_factory) -> Path:
    """A Llama-3-like *base* tokenizer.json (BOS/EOS, no AVSR tokens)."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_base_tokenizer(vocab_size=300).save(str(path))
    return path


@pytest.fixture(scope="session")
def base_vocab(base_tokenizer) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(base_tokenizer)).get_vocab_size(with_added_tokens=True)


def tiny_config(name: str, base_vocab: int) -> ModelConfig:
    cfg = zoo.get(name)
    cfg.llm.vocab = base_vocab + N_ADDED
    return cfg


class CheckpointFactory:
    """Writes random-weight tiny checkpoints once per session and hands out (path, model)."""

    def __init__(self, root: Path, base_vocab: int) -> None:
        self.root, self.base_vocab, self.cache = root, base_vocab, {}

    def __call__(self, name: str, suffix: str = ".pth", dtype=None, seed: int = 0):
        import torch

        from smop_edge.models.checkpoint import random_init, save_checkpoint

        key = (name, suffix, str(dtype), seed)
        if key not in self.cache:
            model = random_init(tiny_config(name, self.base_vocab), seed)
            path = self.root / f"{name}-{seed}-{str(dtype).replace('torch.', '')}{suffix}"
            save_checkpoint(model, path, lightning=suffix == ".ckpt", dtype=dtype)
            self.cache[key] = (path, model)
        return self.cache[key]


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory, base_vocab) -> CheckpointFactory:
    pytest.importorskip("torch", reason="checkpoints need the [export] extra (a runtime-only environment)")
    return CheckpointFactory(tmp_path_factory.mktemp("ckpt"), base_vocab)


@pytest.fixture(scope="session")
def dedr_bundle(tmp_path_factory, make_checkpoint, base_tokenizer):
    """An fp32 ONNX bundle of the tiny DEDR model (it supports ASR, VSR and AVSR)."""
    from smop_edge.export.bundle import ExportOptions, export_bundle
    from smop_edge.models.checkpoint import load_model
    from smop_edge.runtime.tokenizer import load_tokenizer

    path, _ = make_checkpoint("tiny-dedr")
    model, _ = load_model(path)
    out = tmp_path_factory.mktemp("dedr") / "bundle"
    export_bundle(model, load_tokenizer(base_tokenizer, expected_size=model.cfg.llm.vocab), out,
                  ExportOptions(experts="fp32", llm="fp32"), {"checkpoint": path.name}, log=lambda _m: None)
    return out


def astronaut_clip(n_frames: int = 50, size: int = 512, canvas: tuple[int, int] | None = None, seed: int = 0):
    """Frames of scikit-image's public-domain astronaut photo drifting a few pixels, optionally pasted
    small into a larger canvas, with the face's true 2-D offset per frame."""
    import cv2
    import numpy as np
    from skimage import data

    img = cv2.resize(data.astronaut(), (size, size))
    frames, shifts = [], []
    for i in range(n_frames):
        dx, dy = 3 * np.sin(i / 5), 2 * np.cos(i / 7)
        moved = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size), borderMode=cv2.BORDER_REFLECT)
        if canvas:
            frame = np.full((canvas[0], canvas[1], 3), 40, np.uint8)
            frame[50:50 + size, 100:100 + size] = moved
            moved = frame
        frames.append(moved)
        shifts.append((dx, dy))
    return frames, np.array(shifts)


def tone_bursts(seconds: float, rate: int = 16000, seed: int = 0):
    """Speech-like test audio: 220 Hz bursts with pauses, plus a little noise."""
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    on = (np.sin(2 * np.pi * 1.5 * t) > 0).astype(np.float32)
    return (0.3 * np.sin(2 * np.pi * 220 * t) * on + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def write_wav(path, audio, rate: int = 16000, channels: int = 1):
    """16-bit PCM wav of mono float audio, duplicated into `channels` channels."""
    import wave

    import numpy as np

    data = np.repeat(np.clip(np.asarray(audio, np.float64), -1, 1)[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((data * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Four training and two held-out utterances of the demo corpus (mp4 + manifest.jsonl)."""
    from smop_edge.recipe.corpus import synth_corpus

    root = tmp_path_factory.mktemp("corpus")
    synth_corpus(root / "train", 4, seed=5, split="train")
    synth_corpus(root / "test", 2, seed=5, split="test")
    return root


@pytest.fixture(scope="session")
def tiny_word_bank(tmp_path_factory) -> Path:
    """A word bank of two training voices (flite and espeak), one speaker variant each."""
    from smop_edge.recipe import speech_synth, word_bank

    voices = [v for v in speech_synth.TRAIN_VOICES if v.id in ("flite:kal", "espeak:en-us+m1")]
    return word_bank.build(tmp_path_factory.mktemp("words"), voices=voices, variants=1)


def joined_with_pauses(paths: list[Path], pause: float, seed: int = 1) -> np.ndarray:
    """The clips' audio one after another, each followed by `pause` seconds of faint noise: 40 dB below the
    clip before it (a pause at any recording level)."""
    from smop_edge.runtime import media
    from smop_edge.runtime.features import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    parts = []
    for path in paths:
        audio = media.read_audio(path)
        parts += [audio, 0.01 * np.sqrt(np.mean(audio ** 2)) * rng.standard_normal(int(pause * SAMPLE_RATE))]
    return np.concatenate(parts).astype(np.float32)


def edit_manifest(bundle: Path, change, reseal: bool = True) -> None:
    """Apply `change` to a bundle's manifest JSON; with `reseal`, rewrite `manifest.json.sha256` to match, as
    someone who rewrites the digests would (so that the checks behind the manifest's own digest are reached)."""
    import hashlib
    import json

    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    if reseal:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (bundle / "manifest.json.sha256").write_text(f"{digest}  manifest.json\n")
