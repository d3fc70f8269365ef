import argparse
import pickle

import pytest
import torch

from smop_edge.models import zoo
from smop_edge.models.checkpoint import (analyze, build_from_state, infer_config, load_model, load_overrides,
                                         open_checkpoint, read_shapes, save_checkpoint)
from smop_edge.runtime.config import ModelConfig, flatten
from smop_edge.models.llama_smop import LlamaSMoP
from smop_edge.runtime.errors import CheckpointError, UsageError

TINY = ["tiny-jejr", "tiny-jedr", "tiny-dedr", "tiny-mlp", "tiny-stack", "tiny-asr", "tiny-vsr"]


def _comparable(cfg: ModelConfig) -> dict:
    data = cfg.to_dict()
    data.pop("name")
    return data


@pytest.mark.parametrize("name", TINY)
def test_tiny_checkpoints_infer_their_config_and_load_strictly(make_checkpoint, name):
    path, model = make_checkpoint(name)
    loaded = analyze(path)
    assert loaded.report.ok, loaded.report.describe()
    assert loaded.inferred.zoo_match == name
    assert _comparable(loaded.inferred.config) == _comparable(model.cfg)
    # strict round trip: every tensor comes back unchanged
    again, _ = load_model(path)
    original = model.state_dict()
    assert set(again.state_dict()) == set(original)
    for key, value in again.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_official_key_names_are_used(make_checkpoint):
    keys = set(make_checkpoint("tiny-jejr")[1].state_dict())
    for key in ["audiovisual_proj.gate.weight", "audiovisual_proj.experts.3.0.weight",
                "audiovisual_proj.experts.3.2.bias", "audiovisual_proj.experts.3.3.weight",
                "audio_encoder.embed_positions.weight", "audio_encoder.layers.1.self_attn.k_proj.weight",
                "video_encoder.feature_extractor_video.resnet.frontend3D.0.weight",
                "video_encoder.feature_extractor_video.resnet.frontend3D.2.weight",
                "video_encoder.feature_extractor_video.resnet.trunk.layer2.0.downsample.0.weight",
                "video_encoder.feature_extractor_video.resnet.trunk.layer4.1.relu2.weight",
                "video_encoder.feature_extractor_video.proj.weight", "video_encoder.feature_extractor_audio.proj.weight",
                "video_encoder.post_extract_proj.weight", "video_encoder.layer_norm.weight",
                "video_encoder.encoder.pos_conv.0.weight_g", "video_encoder.encoder.pos_conv.0.weight_v",
                "video_encoder.encoder.layers.0.self_attn.out_proj.bias", "video_encoder.encoder.layer_norm.bias",
                "llm.model.embed_tokens.weight", "llm.model.layers.0.self_attn.lora_down_Q.weight",
                "llm.model.layers.1.self_attn.lora_up_V.weight", "llm.model.norm.weight", "llm.lm_head.weight"]:
        assert key in keys, key
    assert "video_encoder.feature_extractor_video.resnet.trunk.layer1.0.downsample.0.weight" not in keys
    assert not any(k.endswith("conv1.bias") and "trunk" in k for k in keys)
    vsr = set(make_checkpoint("tiny-vsr")[1].state_dict())
    assert "video_encoder.encoder.layers.1.self_attn.lora_up_V.weight" in vsr
    assert "video_proj.3.weight" in vsr and "audio_proj.0.weight" not in vsr
    dedr = set(make_checkpoint("tiny-dedr")[1].state_dict())
    assert {"audio_proj.gate.weight", "video_proj.gate.weight", "video_proj.experts.3.3.bias"} <= dedr
    jedr = set(make_checkpoint("tiny-jedr")[1].state_dict())
    assert {"audiovisual_proj.audio_gate.weight", "audiovisual_proj.video_gate.weight"} <= jedr


def _meta_shapes(cfg: ModelConfig) -> dict:
    with torch.device("meta"):
        model = LlamaSMoP(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


REAL = [n for n in zoo.ZOO if not n.startswith("tiny")]


@pytest.mark.parametrize("name", REAL)
def test_real_size_layouts_are_recognised_via_the_zoo(name):
    cfg = zoo.get(name)
    inferred = infer_config(read_shapes(_meta_shapes(cfg), lm_head_tied=cfg.llm.tie_embeddings))
    assert inferred.zoo_match == name
    assert inferred.config == cfg
    assert inferred.sources["llm.heads"] == f"zoo:{name}"
    assert inferred.sources["llm.hidden"] == "shape"


def test_released_smop_with_a_different_lora_rank_still_matches_the_zoo():
    cfg = zoo.get("smop-1b-jejr")
    cfg.llm.lora_bottleneck = 2048 // 16
    inferred = infer_config(read_shapes(_meta_shapes(cfg), True))
    assert inferred.zoo_match == "smop-1b-jejr"
    assert inferred.config.llm.lora_bottleneck == 128 and inferred.sources["llm.lora_bottleneck"] == "shape"


def test_stack_rates_other_than_the_zoo_fall_back_to_component_families():
    cfg = zoo.get("llama-avsr-8b-asr")
    cfg.audio_compression.rate = 5
    inferred = infer_config(read_shapes(_meta_shapes(cfg), False))
    assert inferred.zoo_match is None
    assert inferred.families == {"audio_encoder": "whisper-medium", "llm": "llama-3.1-8b"}
    c = inferred.config
    assert (c.llm.heads, c.llm.kv_heads, c.llm.head_dim, c.llm.rope_scaling.factor) == (32, 8, 128, 8.0)
    assert (c.audio_compression.mode, c.audio_compression.rate) == ("stack", 5)
    assert inferred.sources["audio_compression.rate"] == "shape"
    assert inferred.sources["llm.heads"] == "zoo:llama-3.1-8b"
    assert c.tasks == ["asr"]


def test_sizes_outside_the_zoo_use_documented_defaults():
    cfg = zoo.get("tiny-mlp")
    cfg.llm.hidden, cfg.llm.heads, cfg.llm.kv_heads, cfg.llm.head_dim = 256, 4, 2, 64
    cfg.audio_encoder.d_model, cfg.audio_encoder.heads = 128, 2
    cfg.video_encoder.d_model, cfg.video_encoder.heads = 128, 2
    inferred = infer_config(read_shapes(_meta_shapes(cfg), True))
    c, src = inferred.config, inferred.sources
    assert inferred.zoo_match is None and inferred.families == {}
    assert (c.llm.heads, c.llm.kv_heads, c.llm.head_dim) == (4, 2, 64)
    assert src["llm.heads"] == "default" and src["llm.head_dim"] == "default"
    assert (c.audio_encoder.heads, c.video_encoder.heads) == (2, 2)
    assert (c.audio_compression.rate, c.video_compression.rate) == (4, 2)
    assert src["audio_compression.rate"] == "default"
    assert c.llm.rope_scaling.factor == 32.0 and c.video_encoder.layer_norm_first is True
    assert c.tasks == ["avsr"]


def test_overrides_win_and_are_marked_user(tmp_path):
    cfg = zoo.get("smop-1b-jejr")
    sidecar = tmp_path / "sidecar.json"
    sidecar.write_text('{"llm": {"rope_theta": 10000.0}, "tasks": ["avsr"]}')
    overrides = load_overrides(sidecar, {"audio_compression.rate": 3})
    inferred = infer_config(read_shapes(_meta_shapes(cfg), True), overrides)
    assert inferred.config.audio_compression.rate == 3 and inferred.sources["audio_compression.rate"] == "user"
    assert inferred.config.llm.rope_theta == 10000.0 and inferred.sources["llm.rope_theta"] == "user"
    assert inferred.sources["video_compression.rate"] == "zoo:smop-1b-jejr"
    with pytest.raises(UsageError, match="not valid JSON"):
        sidecar.write_text("{oops")
        load_overrides(sidecar, {})


def test_lightning_ckpt_bf16_with_hyperparameters_and_leftovers(tmp_path, make_checkpoint):
    _, model = make_checkpoint("tiny-jejr")
    state = {f"model.{k}": v.to(torch.bfloat16) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    state["model.video_encoder.final_proj.weight"] = torch.zeros(3, 64)
    state["model.video_encoder.final_proj.bias"] = torch.zeros(3)
    state["model.video_encoder.label_embs_concat"] = torch.zeros(7, 4)
    state["model.video_encoder.mask_emb"] = torch.zeros(64)
    path = tmp_path / "epoch=9.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"args": argparse.Namespace(lr=1e-3, rank=32)},
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}}], "epoch": 9}, path)
    ckpt = open_checkpoint(path)
    assert ckpt.format == "lightning"
    assert ckpt.dropped == ["video_encoder.final_proj.bias", "video_encoder.final_proj.weight",
                            "video_encoder.label_embs_concat", "video_encoder.mask_emb"]
    loaded = analyze(path)
    assert loaded.report.ok and loaded.inferred.zoo_match == "tiny-jejr"
    assert loaded.report.dropped == ckpt.dropped
    fp32, _ = load_model(path)
    assert fp32.llm.model.embed_tokens.weight.dtype == torch.float32
    bf16, _ = load_model(path, dtype=None)
    assert bf16.llm.model.embed_tokens.weight.dtype == torch.bfloat16


def test_safetensors_is_accepted(tmp_path, make_checkpoint):
    _, model = make_checkpoint("tiny-dedr")
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path)
    loaded = analyze(path)
    assert loaded.file.format == "safetensors" and loaded.report.ok
    again, _ = load_model(path)
    assert torch.equal(again.llm.lm_head.weight, model.llm.lm_head.weight)
    assert again.llm.lm_head.weight.data_ptr() == again.llm.model.embed_tokens.weight.data_ptr()


def test_untied_output_head_is_detected(tmp_path, base_vocab):
    from conftest import tiny_config
    from smop_edge.models.checkpoint import random_init

    cfg = tiny_config("tiny-asr", base_vocab)
    cfg.llm.tie_embeddings = False
    model = random_init(cfg)
    path = tmp_path / "untied.pth"
    save_checkpoint(model, path)
    loaded = analyze(path)
    assert loaded.inferred.config.llm.tie_embeddings is False and loaded.report.ok
    again, _ = load_model(path)
    assert not torch.equal(again.llm.lm_head.weight, again.llm.model.embed_tokens.weight)


def test_loading_memory_maps_instead_of_copying(make_checkpoint):
    path, _ = make_checkpoint("tiny-jejr")
    ckpt = open_checkpoint(path)
    model = build_from_state(analyze(path).inferred.config, ckpt.tensors)
    # the model's parameter is the memory-mapped tensor itself, not a copy
    assert model.llm.model.norm.weight.data_ptr() == ckpt.tensors["llm.model.norm.weight"].data_ptr()


def test_unexpected_and_missing_keys_are_reported(tmp_path, make_checkpoint):
    _, model = make_checkpoint("tiny-mlp")
    state = dict(model.state_dict())
    state["audio_proj.9.weight"] = torch.zeros(2)
    del state["video_proj.2.bias"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    report = analyze(path).report
    assert not report.ok
    assert report.unexpected == ["audio_proj.9.weight"] and report.missing == ["video_proj.2.bias"]
    assert "1 missing: video_proj.2.bias" in report.describe()
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(path)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/smop_edge_pwned",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    import os

    marker = "/tmp/smop_edge_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    torch.save({"llm.model.embed_tokens.weight": torch.zeros(2, 2), "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        open_checkpoint(path)
    assert not os.path.exists(marker)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        open_checkpoint(raw)
    assert not os.path.exists(marker)


def test_truncated_and_non_checkpoint_files(tmp_path, make_checkpoint):
    path, _ = make_checkpoint("tiny-asr")
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        open_checkpoint(cut)
    text = tmp_path / "notes.pth"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        open_checkpoint(text)
    with pytest.raises(CheckpointError, match="not found"):
        open_checkpoint(tmp_path / "absent.pth")
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="no state dict"):
        open_checkpoint(tensor_only)


def test_unknown_projector_layout_is_named(tmp_path, make_checkpoint):
    _, model = make_checkpoint("tiny-jejr")
    state = {k.replace("audiovisual_proj.", "fusion_proj."): v for k, v in model.state_dict().items()}
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="unknown projector layout.*fusion_proj"):
        analyze(path)


def test_every_inferred_field_has_a_source(make_checkpoint):
    inferred = analyze(make_checkpoint("tiny-dedr")[0]).inferred
    assert set(inferred.sources) == set(flatten(inferred.config.to_dict()))
    assert set(inferred.sources.values()) <= {"shape", "default", "user", "zoo:tiny-dedr"}


@pytest.mark.parametrize("damage, message", [
    (lambda s: s["llm.model.norm.weight"].__setitem__(0, float("nan")), "hold NaN or infinite values"),
    (lambda s: s.__setitem__("llm.model.norm.weight", torch.zeros(3)), "does not fit"),  # a wrong shape
])
def test_export_refuses_damaged_weights_with_exit_3(tmp_path, make_checkpoint, base_tokenizer, damage, message,
                                                   capsys):
    from smop_edge.apps.cli import main

    _, model = make_checkpoint("tiny-asr")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    damage(state)
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    assert main(["export", str(path), "--tokenizer", str(base_tokenizer), "--out", str(tmp_path / "b")]) == 3
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
