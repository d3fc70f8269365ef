"""Deterministic decoding strategies (greedy, beam search) over any KV-cached decoder.

A `Stepper` owns the decoder and its cache; the strategies only see numpy logits, so the torch
reference and the ONNX Runtime / OpenVINO runtime share exactly the same search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class DecodingOptions:
    """How to search: `beams` = 1 is greedy. Length penalty divides a hypothesis' log-probability
    by (generated tokens, EOS included) ** length_penalty when beams are compared at the end."""

    beams: int = 1
    max_new_tokens: int = 32
    length_penalty: float = 1.0


class Stepper(Protocol):
    """A decoder with a KV cache, seen one token at a time."""

    def prefill(self) -> np.ndarray:
        """Run the prefix once (one cache row); return last-position logits [V]."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per cache row; return logits [rows, V]."""

    def select(self, rows: np.ndarray) -> None:
        """Keep/duplicate/reorder cache rows: new row i is old row rows[i]."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def greedy(stepper: Stepper, eos_ids: set[int], max_new_tokens: int) -> list[int]:
    """Argmax at each step until EOS (not returned) or `max_new_tokens`."""
    out: list[int] = []
    logits = stepper.prefill()
    for _ in range(max_new_tokens):
        token = int(np.argmax(logits))
        if token in eos_ids:
            break
        out.append(token)
        if len(out) == max_new_tokens:
            break
        logits = stepper.step(np.array([token], dtype=np.int64))[0]
    return out


def beam_search(stepper: Stepper, eos_ids: set[int], beams: int, max_new_tokens: int,
                length_penalty: float = 1.0) -> list[int]:
    """Standard beam search: 2*beams candidates per step, EOS candidates ranked within the top
    `beams` finish a hypothesis, stop once `beams` are finished and no running beam can win."""
    def norm(score: float, length: int) -> float:
        return score / (max(length, 1) ** length_penalty)

    seqs: list[list[int]] = [[]]
    scores = np.zeros(1)
    finished: list[tuple[float, list[int]]] = []
    logp = log_softmax(stepper.prefill())[None, :]
    for step in range(max_new_tokens):
        total = scores[:, None] + logp  # [rows, V]
        flat = total.ravel()
        order = np.argsort(-flat, kind="stable")[: 2 * beams]
        rows, tokens, new_scores = [], [], []
        for rank, idx in enumerate(order):
            row, token = divmod(int(idx), logp.shape[1])
            if token in eos_ids:
                if rank < beams:
                    finished.append((norm(float(flat[idx]), step + 1), seqs[row]))
                continue
            rows.append(row), tokens.append(token), new_scores.append(float(flat[idx]))
            if len(rows) == beams:
                break
        finished.sort(key=lambda f: -f[0])
        finished = finished[:beams]
        best_running = norm(new_scores[0], step + 1) if new_scores else -np.inf
        if len(finished) == beams and finished[-1][0] >= best_running:
            break
        if not rows or step + 1 == max_new_tokens:
            finished.extend((norm(s, step + 1), seqs[r] + [t]) for r, t, s in zip(rows, tokens, new_scores))
            break
        seqs = [seqs[r] + [t] for r, t in zip(rows, tokens)]
        scores = np.array(new_scores)
        stepper.select(np.array(rows, dtype=np.int64))
        logp = log_softmax(stepper.step(np.array(tokens, dtype=np.int64)))
    finished.sort(key=lambda f: -f[0])
    return finished[0][1] if finished else []


def decode(stepper: Stepper, eos_ids: set[int], options: DecodingOptions) -> list[int]:
    """Dispatch on `options.beams` (1: greedy)."""
    if options.beams < 1 or options.max_new_tokens < 1:
        raise ValueError("beams and max_new_tokens must be >= 1")
    if options.beams == 1:
        return greedy(stepper, eos_ids, options.max_new_tokens)
    return beam_search(stepper, eos_ids, options.beams, options.max_new_tokens, options.length_penalty)
