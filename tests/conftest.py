"""Shared fixtures: a small base tokenizer and tiny checkpoints with the official key names."""

from __future__ import annotations

from pathlib import Path

import pytest

from smop_edge.models import zoo
from smop_edge.models.config import ModelConfig
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
    return CheckpointFactory(tmp_path_factory.mktemp("ckpt"), base_vocab)
