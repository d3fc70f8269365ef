import pytest
from tokenizers import AddedToken, Tokenizer

from smop_edge.runtime.errors import TokenizerError
from smop_edge.runtime.tokenizer import ADDED_TOKENS, load_tokenizer


def test_base_tokenizer_gets_the_five_tokens_appended_in_order(base_tokenizer, base_vocab):
    tok = load_tokenizer(base_tokenizer, expected_size=base_vocab + 5)
    assert [tok.token_id(t) for t in ADDED_TOKENS] == list(range(base_vocab, base_vocab + 5))
    ids = tok.encode("<audio> seven b")
    assert ids[0] == base_vocab + 1  # the added tokens are atomic
    assert tok.decode(tok.encode("seven b four zero")) == "seven b four zero"
    assert tok.decode([tok.token_id("<video>")] + tok.encode("oh")) == "oh"  # specials skipped


def test_tokenizer_that_already_has_them_is_accepted(tmp_path, base_tokenizer, base_vocab):
    extended = tmp_path / "extended.json"
    load_tokenizer(base_tokenizer).save(extended)
    tok = load_tokenizer(extended, expected_size=base_vocab + 5)
    assert tok.token_id("</video>") == base_vocab + 4


def test_wrong_size_missing_and_partial(tmp_path, base_tokenizer, base_vocab):
    with pytest.raises(TokenizerError, match="embedding has"):
        load_tokenizer(base_tokenizer, expected_size=base_vocab + 6)
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read"):
        load_tokenizer(bad)
    partial = Tokenizer.from_file(str(base_tokenizer))
    partial.add_special_tokens([AddedToken("<pad>", special=True), AddedToken("<audio>", special=True)])
    path = tmp_path / "partial.json"
    partial.save(str(path))
    with pytest.raises(TokenizerError, match="lacks"):
        load_tokenizer(path)
