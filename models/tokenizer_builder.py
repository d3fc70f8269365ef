"""Train a small byte-level BPE tokenizer shaped like a Llama 3 base tokenizer (BOS/EOS specials,
no AVSR tokens yet), for tests, random-init checkpoints and the demo model."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from smop_edge.runtime.errors import UsageError

from smop_edge.runtime.config import ModelConfig, TokensConfig

SAMPLE_TEXT = [
    "transcribe speech to text.", "transcribe video to text.", "transcribe speech and video to text.",
    "zero one two three four five six seven eight nine oh",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "the quick brown fox jumps over the lazy dog",
]


def train_base_tokenizer(texts: Iterable[str] = SAMPLE_TEXT, vocab_size: int = 320,
                         tokens: TokensConfig | None = None) -> Tokenizer:
    """A base tokenizer whose specials are the config's BOS and EOS; its size may be below
    `vocab_size` when the texts hold fewer merges."""
    tokens = tokens or TokensConfig()
    if vocab_size < 258:
        raise UsageError("a byte-level BPE tokenizer needs vocab_size >= 258")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[tokens.bos, tokens.eos],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    return tok


def placeholder_tokenizer(size: int, tokens: TokensConfig | None = None) -> Tokenizer:
    """A word-level stand-in with exactly `size` base tokens (BOS and EOS included), for random-weight
    models at real scale (e.g. Llama 3's 128256) where the real tokenizer is not at hand. It encodes
    whitespace-separated words it knows; it is for benchmarks and shape checks, not for text."""
    tokens = tokens or TokensConfig()
    words = {tokens.bos: 0, tokens.eos: 1, "[UNK]": 2}
    base = [w for text in [*tokens.prompts.values(), *SAMPLE_TEXT] for w in text.replace(".", " .").split()]
    for word in dict.fromkeys(base):
        words.setdefault(word, len(words))
    while len(words) < size:
        words[f"tok{len(words)}"] = len(words)
    if len(words) > size:
        raise UsageError(f"placeholder tokenizer needs at least {len(words)} tokens")
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.add_special_tokens([tokens.bos, tokens.eos])
    return tok


def base_tokenizer_for(config: ModelConfig, vocab: int = 320) -> Tokenizer:
    """The base tokenizer a random-weight model of `config` is paired with: a small trained one for
    tiny configurations (which then sizes `config.llm.vocab`, AVSR tokens included), else a stand-in
    of the real base tokenizer's exact size."""
    n_added = len(config.tokens.added)
    if config.name.startswith("tiny"):
        tok = train_base_tokenizer(vocab_size=vocab)
        config.llm.vocab = tok.get_vocab_size(with_added_tokens=True) + n_added
        return tok
    return placeholder_tokenizer(config.llm.vocab - n_added)
