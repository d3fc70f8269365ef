"""Word error rate, corpus level (docs/design.md §1): lowercase, split on whitespace, the sum of word edit
distances over all utterances divided by the total number of reference words."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def words(text: str) -> list[str]:
    return text.lower().split()


@dataclass(frozen=True)
class WordErrors:
    """The word errors of one alignment of a hypothesis to its reference."""

    substitutions: int = 0
    deletions: int = 0  # reference words the hypothesis misses
    insertions: int = 0  # hypothesis words with no reference word

    @property
    def total(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def word_errors(ref: list[str], hyp: list[str]) -> WordErrors:
    """Substitutions, deletions and insertions of a minimum-edit alignment (each costs 1); among equally
    cheap alignments the one with the most substitutions, so "a b" -> "b c" counts two substitutions,
    not a deletion and an insertion."""
    # row[j]: (cost, -substitutions, deletions, insertions) aligning ref[:i] with hyp[:j]; tuples compare
    # cost first, then prefer substitutions
    row = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], (i, 0, i, 0)
        for j, h in enumerate(hyp, 1):
            up, left = row[j], row[j - 1]
            diag, row[j] = up, min((diag[0] + (r != h), diag[1] - (r != h), diag[2], diag[3]),
                                   (up[0] + 1, up[1], up[2] + 1, up[3]),
                                   (left[0] + 1, left[1], left[2], left[3] + 1))
    _, neg_subs, deletions, insertions = row[-1]
    return WordErrors(-neg_subs, deletions, insertions)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists (substitutions, insertions, deletions cost 1)."""
    return word_errors(ref, hyp).total


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> tuple[float, int, int]:
    """(reference, hypothesis) pairs -> (WER as a fraction, word errors, reference words)."""
    errors = total = 0
    for ref, hyp in pairs:
        r = words(ref)
        errors += edit_distance(r, words(hyp))
        total += len(r)
    return (errors / total if total else 0.0), errors, total
