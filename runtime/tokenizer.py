"""The text side: the base LLM's tokenizer.json plus the five AVSR tokens, encode and decode."""

from __future__ import annotations

from pathlib import Path

from .errors import TokenizerError

ADDED_TOKENS = ("<pad>", "<audio>", "</audio>", "<video>", "</video>")


class TextTokenizer:
    """A `tokenizers.Tokenizer` that is known to hold the five AVSR tokens."""

    def __init__(self, tokenizer, source: str = "") -> None:
        self._tok = tokenizer
        self.source = source

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int:
        idx = self._tok.token_to_id(token)
        if idx is None:
            raise TokenizerError(f"token {token!r} is not in the tokenizer {self.source}")
        return idx

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without BOS/EOS (prompts and transcripts are tokenized this way)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True).strip()

    def save(self, path: str | Path) -> None:
        self._tok.save(str(path))


def load_tokenizer(path: str | Path, expected_size: int | None = None,
                   added_tokens: tuple[str, ...] = ADDED_TOKENS) -> TextTokenizer:
    """Load a tokenizer.json, append the AVSR tokens when absent and check its size.

    Users hand us the *base* LLM's tokenizer: the added tokens then get ids base+0 ... base+4, as in
    the authors' training. Tokenizers that already hold all of them are accepted as they are.
    """
    from tokenizers import AddedToken, Tokenizer

    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer not found: {path}")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses with long messages
        raise TokenizerError(f"cannot read tokenizer {path}: {str(exc).splitlines()[0]}") from None
    present = [t for t in added_tokens if tok.token_to_id(t) is not None]
    if present and len(present) != len(added_tokens):
        missing = [t for t in added_tokens if t not in present]
        raise TokenizerError(f"tokenizer {path} has some AVSR tokens but lacks {missing}")
    if not present:
        base = tok.get_vocab_size(with_added_tokens=True)
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added_tokens])
        got = [tok.token_to_id(t) for t in added_tokens]
        if got != list(range(base, base + len(added_tokens))):
            raise TokenizerError(f"tokenizer {path}: added tokens got ids {got}, expected {base}..")
    wrapped = TextTokenizer(tok, str(path))
    if expected_size is not None and wrapped.vocab_size != expected_size:
        raise TokenizerError(
            f"tokenizer {path} has {wrapped.vocab_size} tokens with the AVSR tokens, but the model's "
            f"embedding has {expected_size} rows: is it the base tokenizer of this model's LLM?"
        )
    return wrapped
