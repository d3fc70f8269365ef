"""Word error rate, corpus level (DESIGN §1): lowercase, split on whitespace, the sum of word edit
distances over all utterances divided by the total number of reference words."""

from __future__ import annotations

from collections.abc import Iterable


def words(text: str) -> list[str]:
    return text.lower().split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists (substitutions, insertions, deletions cost 1)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> tuple[float, int, int]:
    """(reference, hypothesis) pairs -> (WER as a fraction, word errors, reference words)."""
    errors = total = 0
    for ref, hyp in pairs:
        r = words(ref)
        errors += edit_distance(r, words(hyp))
        total += len(r)
    return (errors / total if total else 0.0), errors, total
