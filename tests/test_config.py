import json

import pytest

from smop_edge.models import zoo
from smop_edge.runtime.config import ModelConfig, flatten
from smop_edge.runtime.errors import UsageError


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_every_zoo_entry_round_trips_through_json(name):
    cfg = zoo.get(name)
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == cfg.to_dict()
    cfg.validate()


def test_released_smop_entry_has_the_published_values():
    cfg = zoo.get("smop-1b-jejr")
    assert (cfg.projector.kind, cfg.projector.layout, cfg.projector.num_experts, cfg.projector.top_k) == (
        "smop", "JEJR", 4, 2)
    assert (cfg.audio_compression.mode, cfg.audio_compression.rate) == ("avg-pool", 4)
    assert (cfg.video_compression.mode, cfg.video_compression.rate) == ("avg-pool", 2)
    assert (cfg.llm.hidden, cfg.llm.layers, cfg.llm.heads, cfg.llm.kv_heads, cfg.llm.vocab) == (2048, 16, 32, 8, 128261)
    assert cfg.llm.lora_bottleneck == 2048 // 32 and cfg.llm.lora_scale == 4 / 32
    assert cfg.video_encoder.layer_norm_first is True
    assert zoo.VIDEO_ENCODERS["avhubert-base"].layer_norm_first is False
    assert zoo.get("llama-avsr-8b-avsr").llm.rope_scaling.factor == 8.0


def test_config_with_absent_encoder_round_trips():
    cfg = zoo.get("llama-avsr-1b-vsr")
    assert cfg.audio_encoder is None
    assert ModelConfig.from_dict(cfg.to_dict()).audio_encoder is None


@pytest.mark.parametrize("path,value,message", [
    ("projector.layout", "XYZ", "unknown SMoP layout"),
    ("projector.kind", "moe", "unknown projector kind"),
    ("projector.top_k", 5, "top_k"),
    ("audio_compression.mode", "conv", "unknown compression"),
    ("tasks", ["asr", "ocr"], "unknown task"),
])
def test_invalid_values_are_rejected_with_a_clear_message(path, value, message):
    data = zoo.get("smop-1b-jejr").to_dict()
    section, _, key = path.rpartition(".")
    (data[section] if section else data)[key] = value
    with pytest.raises(UsageError, match=message):
        ModelConfig.from_dict(data).validate()


def test_unknown_fields_are_rejected():
    with pytest.raises(UsageError, match="unknown field.*hiden"):
        ModelConfig.from_dict({"llm": {"hiden": 3}})


def test_flatten_keeps_prompts_as_one_leaf():
    flat = flatten(zoo.get("tiny-jejr").to_dict())
    assert flat["tokens.prompts"]["avsr"] == "Transcribe speech and video to text."
    assert flat["llm.rope_scaling.factor"] == 32.0
