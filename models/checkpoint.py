"""Checkpoint adapter: open `.pth` / Lightning `.ckpt` / safetensors files safely, infer the config
from shapes (+ zoo + documented defaults + user overrides, each value with its source), check keys
strictly, and load a `LlamaSMoP` without copying weights more than needed."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from smop_edge.runtime.errors import CheckpointError, UsageError

from . import zoo
from smop_edge.runtime.config import ModelConfig, flatten, set_path

# Training leftovers that the authors' checkpoints carry and inference never uses.
LEFTOVER_PATTERNS = (
    r"video_encoder\.final_proj\..*",
    r"video_encoder\.label_embs_concat",
    r"video_encoder\.mask_emb",
)
DEFAULT_HEAD_DIM = 64  # every Whisper and AV-HuBERT size, and Llama-3.2-1B
DEFAULT_RATES = {"audio": 4, "video": 2}  # the released SMoP avg-pool rates


# ==== opening files ===============================================================================
@dataclass
class CheckpointFile:
    """Tensors of a checkpoint (memory-mapped where the format allows) and what was set aside."""

    path: Path
    format: str  # torch | lightning | safetensors
    tensors: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.tensors.items()}

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def _is_safetensors(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


def _torch_load(path: Path) -> Any:
    import argparse
    import warnings

    # Lightning stores hyper-parameters as argparse.Namespace; that one class is safe to allow.
    # torch warns about pickle protocols on arbitrary bytes; our own error message says what matters.
    with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc) and "zip" not in str(exc).lower():
                raise
            if zipfile.is_zipfile(path):
                raise
            # legacy (non-zip) torch.save format cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True)


def open_checkpoint(path: str | Path) -> CheckpointFile:
    """Open a checkpoint without executing code from it (weights_only) and strip the Lightning
    `model.` prefix; leftovers listed in LEFTOVER_PATTERNS are set aside in `dropped`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"not a file: {path}")
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            obj, fmt = load_file(str(path)), "safetensors"
        except Exception as exc:
            raise CheckpointError(f"corrupt safetensors file {path}: {str(exc).splitlines()[0]}") from None
    else:
        try:
            obj = _torch_load(path)
        except pickle.UnpicklingError as exc:
            msg = str(exc)
            if "Weights only load failed" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
                raise CheckpointError(
                    f"refusing to load {path}: it contains Python objects other than tensors, "
                    "which could run code (only weights are accepted)") from None
            raise CheckpointError(f"not a PyTorch checkpoint or safetensors file: {path}") from None
        except Exception as exc:  # torch raises many types on bytes that are not a checkpoint
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if zipfile.is_zipfile(path) or "zip" in first.lower() or isinstance(exc, EOFError):
                raise CheckpointError(f"truncated or corrupt checkpoint {path} ({first})") from None
            raise CheckpointError(f"not a PyTorch checkpoint or safetensors file: {path}") from None
        fmt = "torch"
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj, fmt = obj["state_dict"], "lightning"
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    tensors = dict(obj)
    if all(k.startswith("model.") for k in tensors):
        tensors = {k[len("model."):]: v for k, v in tensors.items()}
    dropped = sorted(k for k in tensors if any(re.fullmatch(p, k) for p in LEFTOVER_PATTERNS))
    for k in dropped:
        del tensors[k]
    return CheckpointFile(path, fmt, tensors, dropped)


# ==== what the shapes say =========================================================================
def _count(shapes: dict[str, tuple], pattern: str) -> int:
    idx = {int(m.group(1)) for k in shapes if (m := re.match(pattern, k))}
    return max(idx) + 1 if idx else 0


def _need(shapes: dict[str, tuple], key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(f"expected key {key!r} is missing: not a Llama-AVSR/SMoP checkpoint?")
    return shapes[key]


def read_shapes(shapes: dict[str, tuple[int, ...]], lm_head_tied: bool | None) -> dict[str, Any]:
    """Everything a state dict's shapes reveal, as flat config paths (plus `llm.q_rows`/`kv_rows`,
    from which head counts follow once a head size is known)."""
    if not any(k.startswith("llm.") for k in shapes):
        raise CheckpointError("no `llm.*` keys: not a Llama-AVSR/SMoP checkpoint")
    out: dict[str, Any] = {}
    has_audio = any(k.startswith("audio_encoder.") for k in shapes)
    has_video = any(k.startswith("video_encoder.") for k in shapes)
    out["audio_encoder"] = has_audio
    out["video_encoder"] = has_video
    if has_audio:
        conv = _need(shapes, "audio_encoder.conv1.weight")
        out.update({
            "audio_encoder.d_model": conv[0], "audio_encoder.mel_bins": conv[1],
            "audio_encoder.layers": _count(shapes, r"audio_encoder\.layers\.(\d+)\."),
            "audio_encoder.ffn_dim": _need(shapes, "audio_encoder.layers.0.fc1.weight")[0],
            "audio_encoder.max_positions": _need(shapes, "audio_encoder.embed_positions.weight")[0],
        })
    if has_video:
        p = "video_encoder."
        d = _need(shapes, p + "post_extract_proj.weight")[0]
        pos = _need(shapes, p + "encoder.pos_conv.0.weight_v")
        lora = shapes.get(p + "encoder.layers.0.self_attn.lora_down_Q.weight")
        out.update({
            "video_encoder.d_model": d,
            "video_encoder.layers": _count(shapes, r"video_encoder\.encoder\.layers\.(\d+)\."),
            "video_encoder.ffn_dim": _need(shapes, p + "encoder.layers.0.fc1.weight")[0],
            "video_encoder.stem_channels": _need(shapes, p + "feature_extractor_video.resnet.frontend3D.0.weight")[0],
            "video_encoder.trunk_widths": [
                _need(shapes, f"{p}feature_extractor_video.resnet.trunk.layer{i}.0.conv1.weight")[0]
                for i in range(1, 5)],
            "video_encoder.audio_feature_dim": _need(shapes, p + "feature_extractor_audio.proj.weight")[1],
            "video_encoder.pos_conv_kernel": pos[2],
            "video_encoder.pos_conv_groups": d // pos[1],
            "video_encoder.lora_bottleneck": lora[0] if lora else 0,
        })
    embed = _need(shapes, "llm.model.embed_tokens.weight")
    lora = shapes.get("llm.model.layers.0.self_attn.lora_down_Q.weight")
    out.update({
        "llm.vocab": embed[0], "llm.hidden": embed[1],
        "llm.layers": _count(shapes, r"llm\.model\.layers\.(\d+)\."),
        "llm.ffn_dim": _need(shapes, "llm.model.layers.0.mlp.gate_proj.weight")[0],
        "llm.q_rows": _need(shapes, "llm.model.layers.0.self_attn.q_proj.weight")[0],
        "llm.kv_rows": _need(shapes, "llm.model.layers.0.self_attn.k_proj.weight")[0],
        "llm.lora_bottleneck": lora[0] if lora else 0,
        "llm.tie_embeddings": bool(lm_head_tied) if lm_head_tied is not None else True,
    })
    out.update(_read_projector(shapes, has_audio, has_video, out))
    return out


def _read_projector(shapes: dict[str, tuple], has_audio: bool, has_video: bool,
                    found: dict[str, Any]) -> dict[str, Any]:
    """Projector kind, layout, experts, widths and the compression they imply."""
    def mlp_info(prefix: str) -> tuple[int, int, bool]:
        first = _need(shapes, prefix + "0.weight")
        return first[1], first[0], prefix + "3.weight" in shapes

    out: dict[str, Any] = {}
    widths: dict[str, int] = {}
    if "audiovisual_proj.gate.weight" in shapes or "audiovisual_proj.audio_gate.weight" in shapes \
            or "audiovisual_proj.video_gate.weight" in shapes:
        layout = "JEJR" if "audiovisual_proj.gate.weight" in shapes else "JEDR"
        gate_key = next(k for k in ("audiovisual_proj.gate.weight", "audiovisual_proj.audio_gate.weight",
                                    "audiovisual_proj.video_gate.weight") if k in shapes)
        experts, width = shapes[gate_key]
        _, hidden, ln = mlp_info("audiovisual_proj.experts.0.")
        out.update({"projector.kind": "smop", "projector.layout": layout, "projector.num_experts": experts,
                    "projector.hidden": hidden, "projector.layer_norm": ln})
        widths = {m: width for m, present in (("audio", has_audio), ("video", has_video)) if present}
    elif any(k.startswith(("audio_proj.", "video_proj.")) for k in shapes):
        smop = "audio_proj.gate.weight" in shapes or "video_proj.gate.weight" in shapes
        for m, present in (("audio", has_audio), ("video", has_video)):
            if not present:
                continue
            if not any(k.startswith(f"{m}_proj.") for k in shapes):
                raise CheckpointError(f"checkpoint has a {m} encoder but no {m}_proj projector")
            prefix = f"{m}_proj.experts.0." if smop else f"{m}_proj."
            width, hidden, ln = mlp_info(prefix)
            widths[m] = width
            out.update({"projector.hidden": hidden, "projector.layer_norm": ln})
            if smop:
                out["projector.num_experts"] = _need(shapes, f"{m}_proj.gate.weight")[0]
        out.update({"projector.kind": "smop" if smop else "mlp"})
        if smop:
            out["projector.layout"] = "DEDR"
    else:
        proj_keys = sorted({k.split(".")[0] for k in shapes if "proj" in k.split(".")[0]})
        raise CheckpointError("unknown projector layout: expected `audio_proj`/`video_proj` (MLP, DEDR) or "
                              f"`audiovisual_proj.gate`/`audio_gate` (JEJR, JEDR); found {proj_keys or 'none'}")
    for m, width in widths.items():
        d = found[f"{m}_encoder.d_model"]
        if width % d:
            raise CheckpointError(f"{m} projector input width {width} is not a multiple of the encoder width {d}")
        rate = width // d
        out[f"{m}_compression.mode"] = "avg-pool" if rate == 1 else "stack"
        if rate > 1:
            out[f"{m}_compression.rate"] = rate
    return out


# ==== from shapes to a config =====================================================================
SHAPE = "shape"
DEFAULT = "default"
USER = "user"


@dataclass
class InferredConfig:
    """A config and, for every field, where its value came from (shape, zoo:<name>, default, user)."""

    config: ModelConfig
    sources: dict[str, str]
    zoo_match: str | None = None
    families: dict[str, str] = field(default_factory=dict)


def _signature(cfg: ModelConfig) -> dict[str, Any]:
    """The shape-visible facts of a config, in `read_shapes` form, for zoo matching."""
    shapes = {}
    flat = flatten(cfg.to_dict())
    shapes["audio_encoder"] = cfg.has_audio
    shapes["video_encoder"] = cfg.has_video
    for path, value in flat.items():
        section = path.split(".")[0]
        if section in ("audio_encoder", "video_encoder") and value is not None and path.count("."):
            shapes[path] = value
    llm = cfg.llm
    shapes.update({"llm.vocab": llm.vocab, "llm.hidden": llm.hidden, "llm.layers": llm.layers,
                   "llm.ffn_dim": llm.ffn_dim, "llm.q_rows": llm.heads * llm.head_dim,
                   "llm.kv_rows": llm.kv_heads * llm.head_dim})
    p = cfg.projector
    shapes.update({"projector.kind": p.kind, "projector.hidden": p.hidden, "projector.layer_norm": p.layer_norm})
    if p.kind == "smop":
        shapes.update({"projector.layout": p.layout, "projector.num_experts": p.num_experts})
    for m in ("audio", "video"):
        comp = getattr(cfg, f"{m}_compression")
        if getattr(cfg, f"has_{m}"):
            shapes[f"{m}_compression.mode"] = comp.mode if comp.rate > 1 else "avg-pool"
            if comp.mode == "stack":
                shapes[f"{m}_compression.rate"] = comp.rate
    return shapes


# Shape facts that are not identity (fine-tuning choices), ignored when matching families/zoo.
_NOT_IDENTITY = {"llm.lora_bottleneck", "video_encoder.lora_bottleneck", "llm.tie_embeddings", "llm.vocab"}


def _matches(sig: dict[str, Any], measured: dict[str, Any], prefix: str = "") -> bool:
    keys = [k for k in measured if k.startswith(prefix) and k not in _NOT_IDENTITY and "." in k]
    if prefix == "":
        keys += ["audio_encoder", "video_encoder"]
    return all(sig.get(k) == measured.get(k) for k in keys)


def _family_signature(section: str, family: Any) -> dict[str, Any]:
    sig = {f"{section}.{k}": v for k, v in flatten(dataclasses.asdict(family)).items()}
    if section == "llm":
        sig["llm.q_rows"] = family.heads * family.head_dim
        sig["llm.kv_rows"] = family.kv_heads * family.head_dim
    return sig


def infer_config(measured: dict[str, Any], overrides: dict[str, Any] | None = None) -> InferredConfig:
    """Build the config: shape facts first; then a whole-model zoo match, else a match per component
    family, else documented defaults (head size 64, Llama-3.2 rope, avg-pool 4/2); then overrides."""
    data = ModelConfig().to_dict()
    sources: dict[str, str] = {}
    families: dict[str, str] = {}
    match = next((name for name, entry in zoo.ZOO.items() if _matches(_signature(entry), measured)), None)
    if match:
        data = zoo.get(match).to_dict()
        sources = {k: f"zoo:{match}" for k in flatten(data)}
    else:
        data["name"] = "custom"
        for m in ("audio", "video"):
            if not measured[f"{m}_encoder"]:
                data[f"{m}_encoder"] = None
        for section, table in (("audio_encoder", zoo.AUDIO_ENCODERS), ("video_encoder", zoo.VIDEO_ENCODERS),
                               ("llm", zoo.LLMS)):
            if data.get(section) is None:
                continue
            fam = next((n for n, f in table.items()
                        if all(measured.get(k) == v for k, v in _family_signature(section, f).items()
                               if k in measured and k not in _NOT_IDENTITY)), None)
            if fam:
                families[section] = fam
                data[section] = dataclasses.asdict(table[fam])
            for k in flatten({section: data[section]}):
                sources[k] = f"zoo:{fam}" if fam else DEFAULT
        for k in flatten(data):
            sources.setdefault(k, DEFAULT)
        data["tasks"] = ["avsr"] if measured["audio_encoder"] and measured["video_encoder"] else (
            ["asr"] if measured["audio_encoder"] else ["vsr"])
        for m, rate in DEFAULT_RATES.items():
            data[f"{m}_compression"]["rate"] = rate
        if "llm" not in families:
            data["llm"]["head_dim"] = DEFAULT_HEAD_DIM
        for section in ("audio_encoder", "video_encoder"):
            if data.get(section) is not None and section not in families:
                data[section]["heads"] = max(1, measured[f"{section}.d_model"] // DEFAULT_HEAD_DIM)
    # shape facts always win over the zoo and defaults
    for path, value in measured.items():
        if "." not in path or path in ("llm.q_rows", "llm.kv_rows"):
            continue
        set_path(data, path, value)
        sources[path] = SHAPE
    llm = data["llm"]
    if not match and "llm" not in families:
        llm["heads"] = measured["llm.q_rows"] // llm["head_dim"]
        llm["kv_heads"] = measured["llm.kv_rows"] // llm["head_dim"]
    if data["projector"]["top_k"] > data["projector"]["num_experts"]:
        data["projector"]["top_k"] = data["projector"]["num_experts"]
    for path, value in flatten(overrides or {}).items():
        set_path(data, path, value)
        sources[path] = USER
    if overrides and "name" not in overrides and match:
        data["name"] = f"{match}+overrides"
    config = ModelConfig.from_dict(data)
    sources = {k: sources.get(k, DEFAULT) for k in flatten(config.to_dict())}
    return InferredConfig(config.validate(), sources, match, families)


def load_overrides(sidecar: str | Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """Merge a JSON sidecar (partial config) with command-line flag overrides (flags win)."""
    data: dict[str, Any] = {}
    if sidecar:
        path = Path(sidecar)
        if not path.is_file():
            raise UsageError(f"config sidecar not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"config sidecar {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"config sidecar {path} must hold a JSON object")
    for path_, value in flags.items():
        if value is not None:
            set_path(data, path_, value)
    return data


# ==== strict key check and loading ================================================================
@dataclass
class KeyReport:
    """How a checkpoint's keys compare with the model its config describes."""

    loaded: int
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]  # "key: checkpoint (a, b) vs model (c, d)"
    dropped: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 10) -> str:
        lines = []
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
                lines.append(f"{len(keys)} {title}: {shown}")
        return "; ".join(lines) if lines else "all keys match"


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes of the model `config` describes, without allocating it."""
    from .llama_smop import LlamaSMoP

    with torch.device("meta"):
        model = LlamaSMoP(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_keys(shapes: dict[str, tuple[int, ...]], config: ModelConfig, dropped: list[str]) -> KeyReport:
    expected = expected_shapes(config)
    missing = sorted(k for k in expected if k not in shapes
                     and not (k == "llm.lm_head.weight" and config.llm.tie_embeddings))
    unexpected = sorted(k for k in shapes if k not in expected)
    mismatched = sorted(f"{k}: checkpoint {shapes[k]} vs model {expected[k]}"
                        for k in shapes if k in expected and shapes[k] != expected[k])
    return KeyReport(len(shapes) - len(unexpected), missing, unexpected, mismatched, dropped)


def lm_head_tied(ckpt: CheckpointFile) -> bool:
    """True when the checkpoint has no separate output head or it equals the token embedding."""
    head = ckpt.tensors.get("llm.lm_head.weight")
    if head is None:
        return True
    embed = ckpt.tensors["llm.model.embed_tokens.weight"]
    if head.shape != embed.shape:
        return False
    if head.data_ptr() == embed.data_ptr():
        return True
    return bool(torch.equal(head, embed))


@dataclass
class LoadedCheckpoint:
    file: CheckpointFile
    inferred: InferredConfig
    report: KeyReport


def analyze(path: str | Path, overrides: dict[str, Any] | None = None) -> LoadedCheckpoint:
    """Open a checkpoint, infer its config and compare its keys; loads no model."""
    ckpt = open_checkpoint(path)
    measured = read_shapes(ckpt.shapes, lm_head_tied(ckpt))
    inferred = infer_config(measured, overrides)
    return LoadedCheckpoint(ckpt, inferred, check_keys(ckpt.shapes, inferred.config, ckpt.dropped))


def load_model(path: str | Path, overrides: dict[str, Any] | None = None,
               dtype: torch.dtype | None = torch.float32):
    """(model in eval mode, LoadedCheckpoint). The model is built on the meta device and takes the
    checkpoint's (memory-mapped) tensors directly; only a dtype change copies them."""
    from .llama_smop import LlamaSMoP

    loaded = analyze(path, overrides)
    if not loaded.report.ok:
        raise CheckpointError(f"{path} does not fit the inferred model: {loaded.report.describe()}")
    model = build_from_state(loaded.inferred.config, loaded.file.tensors)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval(), loaded


def build_from_state(config: ModelConfig, state: dict[str, torch.Tensor]):
    """A `LlamaSMoP` for `config` whose parameters are the given tensors (strict)."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from .llama_smop import LlamaSMoP

    with torch.device("meta"):
        model = LlamaSMoP(config)
    state = dict(state)
    if config.llm.tie_embeddings:
        state.pop("llm.lm_head.weight", None)
        state["llm.lm_head.weight"] = state["llm.model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if config.llm.tie_embeddings:
        model.llm.lm_head.weight = model.llm.model.embed_tokens.weight
    # non-persistent buffers (rotary frequencies) are not in any state dict: rebuild them on the CPU
    model.llm.model.rotary_emb = LlamaRotaryEmbedding(config=model.llm.config)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"internal: tensors left unloaded: {left[:5]}")
    return model


def save_checkpoint(model: torch.nn.Module, path: str | Path, lightning: bool = False,
                    dtype: torch.dtype | None = None) -> None:
    """Write `model`'s state dict with the official key names (`.pth`, or a Lightning-style
    `.ckpt` with `model.` prefixes, or `.safetensors` by extension)."""
    path = Path(path)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        state = {k: v.contiguous().clone() for k, v in state.items() if k != "llm.lm_head.weight"
                 or not model.cfg.llm.tie_embeddings}
        save_file(state, str(path))
    elif lightning:
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 0,
                    "global_step": 0}, path)
    else:
        torch.save(state, path)


def random_init(config: ModelConfig, seed: int = 0):
    """A randomly initialised model for `config` (LoRA up/down both random, so LoRA matters)."""
    from .llama_smop import LlamaSMoP

    torch.manual_seed(seed)
    model = LlamaSMoP(copy.deepcopy(config))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_down" in name:
                torch.nn.init.normal_(p, std=0.02)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()
