"""Faithful PyTorch reference inference: waveform and/or mouth crops -> text.

The oracle every exported graph is compared with, and a fair CPU baseline (KV cache, no prefix
recomputation). Audio features come from `runtime.features`, decoding from `runtime.decoding`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from transformers import DynamicCache

from smop_edge.runtime import features
from smop_edge.runtime.decoding import DecodingOptions, decode
from smop_edge.runtime.errors import UnsuitableInputError, UsageError
from smop_edge.runtime.prompt import TASK_MODALITIES, SpecialIds, pick_task, prefix_segments
from smop_edge.runtime.recognizer import Transcript, elapsed_ms
from smop_edge.runtime.tokenizer import TextTokenizer, load_tokenizer

from .llama_smop import LlamaSMoP

AUDIO_MODES = ("faithful", "fast")


class TorchStepper:
    """`runtime.decoding.Stepper` over transformers' Llama with a DynamicCache."""

    def __init__(self, llm, prefix: torch.Tensor) -> None:
        self.llm, self.prefix, self.cache = llm, prefix, DynamicCache()

    @torch.inference_mode()
    def prefill(self) -> np.ndarray:
        out = self.llm(inputs_embeds=self.prefix, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        return out.logits[0, -1].float().numpy()

    @torch.inference_mode()
    def step(self, tokens: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))[:, None]
        out = self.llm(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        return out.logits[:, -1].float().numpy()

    def select(self, rows: np.ndarray) -> None:
        self.cache.reorder_cache(torch.from_numpy(np.asarray(rows, dtype=np.int64)))


class ReferenceRecognizer:
    """The faithful model behind a small `transcribe` API (batch of one utterance)."""

    def __init__(self, model: LlamaSMoP, tokenizer: TextTokenizer, audio_mode: str = "faithful") -> None:
        if audio_mode not in AUDIO_MODES:
            raise UsageError(f"unknown audio mode {audio_mode!r} (choose from {', '.join(AUDIO_MODES)})")
        self.model, self.tokenizer, self.audio_mode = model.eval(), tokenizer, audio_mode
        cfg = model.cfg
        if tokenizer.vocab_size != cfg.llm.vocab:
            raise UsageError(f"tokenizer has {tokenizer.vocab_size} tokens, model {cfg.llm.vocab}")
        self.ids = SpecialIds.from_tokenizer(tokenizer, cfg.tokens.bos, cfg.tokens.eos, cfg.tokens.added)

    @property
    def tasks(self) -> list[str]:
        return self.model.cfg.tasks

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, tokenizer: str | Path, overrides: dict | None = None,
                        audio_mode: str = "faithful") -> "ReferenceRecognizer":
        from .checkpoint import load_model

        model, _ = load_model(checkpoint, overrides)
        return cls(model, load_tokenizer(tokenizer, expected_size=model.cfg.llm.vocab), audio_mode)

    @torch.inference_mode()
    def encode(self, audio: np.ndarray | None, frames: np.ndarray | None, task: str,
               timings: dict[str, float] | None = None):
        """Run encoders, compression and projector; returns (audio tokens, video tokens, routings).
        `timings` gets milliseconds per stage, named as the runtime's (`features`, `audio_encoder`,
        `video_encoder`, `projector`, the last with compression included)."""
        m = self.model
        timings = {} if timings is None else timings
        need = TASK_MODALITIES[task]
        dtype = next(m.parameters()).dtype
        a = v = None
        if "video" in need:
            if frames is None:
                raise UnsuitableInputError(f"task {task} needs mouth frames")
            frames = np.asarray(frames, dtype=np.float32)
            if frames.ndim != 3:
                raise UsageError(f"mouth frames must be [T, H, W], got shape {frames.shape}")
            t0 = time.perf_counter()
            v = m.encode_video(torch.from_numpy(frames)[None].to(dtype))
            timings["video_encoder"] = elapsed_ms(t0)
        if "audio" in need:
            if audio is None:
                raise UnsuitableInputError(f"task {task} needs audio")
            if "video" in need:
                audio = features.align_audio_to_video(audio, frames.shape[0])
            t0 = time.perf_counter()
            try:
                mel, keep = features.audio_encoder_input(audio, m.cfg.audio_encoder.mel_bins,
                                                         self.audio_mode == "faithful")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            timings["features"] = elapsed_ms(t0)
            t0 = time.perf_counter()
            a = m.encode_audio(torch.from_numpy(mel)[None].to(dtype), keep, self.audio_mode == "faithful")
            timings["audio_encoder"] = elapsed_ms(t0)
        t0 = time.perf_counter()
        out = m.project(a, v)
        timings["projector"] = elapsed_ms(t0)
        return out

    @torch.inference_mode()
    def prepare(self, audio: np.ndarray | None, frames: np.ndarray | None, task: str | None = None
                ) -> tuple[str, torch.Tensor, list]:
        """Everything before decoding: (task, prefix embeddings [1, L, H], routings)."""
        task = pick_task(self.model.cfg.tasks, audio is not None, frames is not None, task)
        a, v, routing = self.encode(audio, frames, task)
        return task, self.assemble_prefix(task, a, v), routing

    def assemble_prefix(self, task: str, audio_tokens: torch.Tensor | None, video_tokens: torch.Tensor | None
                 ) -> torch.Tensor:
        """Projected tokens + the task's special tokens and prompt -> prefix embeddings [1, L, H]."""
        prompt = self.tokenizer.encode(self.model.cfg.tokens.prompts[task])
        return self.model.assemble_prefix(prefix_segments(task, self.ids, prompt), audio_tokens, video_tokens)

    def stepper(self, prefix: torch.Tensor) -> TorchStepper:
        """The decoder with a fresh KV cache over `prefix` [1, L, H] (a `runtime.decoding.Stepper`)."""
        return TorchStepper(self.model.llm, prefix)

    def transcribe(self, audio: np.ndarray | None = None, frames: np.ndarray | None = None,
                   task: str | None = None, options: DecodingOptions | None = None) -> Transcript:
        """16 kHz mono `audio` and/or normalised 88x88 mouth `frames` [T, 88, 88] -> Transcript."""
        task, prefix, routing = self.prepare(audio, frames, task)
        tokens = decode(self.stepper(prefix), {self.ids.eos}, options or DecodingOptions())
        return Transcript(self.tokenizer.decode(tokens), tokens, task, prefix.shape[1], details={"routing": routing})
