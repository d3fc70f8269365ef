"""Search strategies on a scripted decoder whose next-token distribution depends on the history."""

import numpy as np
import pytest

from smop_edge.runtime.decoding import DecodingOptions, beam_search, decode, greedy

EOS, V = 0, 5


class Scripted:
    """log-probs keyed by the token history; rows are histories (the 'cache')."""

    def __init__(self, table):
        self.table, self.rows, self.calls = table, [()], 0

    def _logits(self, hist):
        probs = self.table.get(hist, {EOS: 1.0})
        out = np.full(V, -1e9)
        for tok, p in probs.items():
            out[tok] = np.log(p)
        return out

    def prefill(self):
        return self._logits(())

    def step(self, tokens):
        self.calls += 1
        self.rows = [h + (int(t),) for h, t in zip(self.rows, tokens)]
        return np.stack([self._logits(h) for h in self.rows])

    def select(self, rows):
        self.rows = [self.rows[r] for r in rows]


# greedy takes 1 (0.6) then is stuck with 0.3-probability tokens; 2 (0.4) leads to a sure path.
TABLE = {(): {1: 0.6, 2: 0.4}, (1,): {3: 0.3, 4: 0.3, EOS: 0.4}, (1, 3): {EOS: 1.0}, (1, 4): {EOS: 1.0},
         (2,): {3: 0.99, EOS: 0.01}, (2, 3): {EOS: 1.0}}


def test_greedy_follows_the_argmax_and_stops_at_eos():
    assert greedy(Scripted(TABLE), {EOS}, 10) == [1]


def test_beam_search_finds_the_more_probable_sequence():
    # P(1, EOS) = 0.24 ; P(2, 3, EOS) = 0.396 -> beam search must prefer it
    assert beam_search(Scripted(TABLE), {EOS}, beams=2, max_new_tokens=10, length_penalty=0.0) == [2, 3]


def test_max_new_tokens_caps_the_output():
    loop = {(): {1: 1.0}}
    for n in range(1, 20):
        loop[(1,) * n] = {1: 1.0}
    s = Scripted(loop)
    assert greedy(s, {EOS}, 4) == [1, 1, 1, 1]
    assert s.calls == 3  # the last token is never fed back
    assert beam_search(Scripted(loop), {EOS}, 3, 4) == [1, 1, 1, 1]


def test_decode_dispatch_and_validation():
    assert decode(Scripted(TABLE), {EOS}, DecodingOptions(beams=1)) == [1]
    assert decode(Scripted(TABLE), {EOS}, DecodingOptions(beams=3, length_penalty=0.0)) == [2, 3]
    with pytest.raises(ValueError):
        decode(Scripted(TABLE), {EOS}, DecodingOptions(beams=0))
