"""The model configuration: one JSON-serialisable dataclass (with nested parts) for every model.

Sizes come from a checkpoint's shapes; everything else (heads, rope, eps, LoRA scale, pre/post-LN,
avg-pool rates) comes from the zoo or documented defaults, see `models.checkpoint`. It lives in the
runtime because every bundle manifest carries it and the runtime must not import the model package.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .typed import FieldError, from_data

TASKS = ("asr", "vsr", "avsr")
LAYOUTS = ("JEJR", "JEDR", "DEDR")
PROJECTOR_KINDS = ("mlp", "smop")
COMPRESSION_MODES = ("avg-pool", "stack")


@dataclass
class AudioEncoderConfig:
    """Whisper encoder (Hugging Face `WhisperEncoder` names)."""

    d_model: int = 1024
    layers: int = 24
    heads: int = 16
    ffn_dim: int = 4096
    mel_bins: int = 80
    max_positions: int = 1500


@dataclass
class VideoEncoderConfig:
    """AV-HuBERT used video-only (fairseq names), ResNet-18 front end included."""

    d_model: int = 1024
    layers: int = 24
    heads: int = 16
    ffn_dim: int = 4096
    stem_channels: int = 64
    trunk_widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    audio_feature_dim: int = 104
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = True  # Large is pre-LN, Base post-LN; no key tells them apart
    lora_bottleneck: int = 0  # 0: no LoRA; the authors' optional AV-HuBERT LoRA uses d / 16
    lora_scale: float = 2.0


@dataclass
class CompressionConfig:
    """How one modality's encoder frames become fewer LLM tokens."""

    mode: str = "avg-pool"  # avg-pool: AvgPool1d(rate), width unchanged; stack: concat `rate` frames
    rate: int = 1


@dataclass
class ProjectorConfig:
    """Encoder features to LLM embeddings: an MLP per modality, or a sparse mixture of projectors."""

    kind: str = "smop"  # mlp | smop
    layout: str = "JEJR"  # smop only: JEJR | JEDR | DEDR
    num_experts: int = 4
    top_k: int = 2
    hidden: int = 2048
    layer_norm: bool = True
    load_balancing_coef: float = 0.01
    z_loss_coef: float = 0.001


@dataclass
class RopeScalingConfig:
    """Llama 3 frequency-dependent rope scaling."""

    rope_type: str = "llama3"
    factor: float = 32.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass
class LLMConfig:
    """The Llama decoder (Hugging Face `LlamaForCausalLM` names) and its divisor LoRA on Q and V."""

    hidden: int = 2048
    layers: int = 16
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 64
    ffn_dim: int = 8192
    vocab: int = 128261
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: RopeScalingConfig | None = field(default_factory=RopeScalingConfig)
    max_positions: int = 131072
    tie_embeddings: bool = True
    lora_bottleneck: int = 64  # hidden / rank; 0: no LoRA
    lora_scale: float = 0.125  # alpha / rank


@dataclass
class TokensConfig:
    """Special tokens and prompts; ids are resolved through the tokenizer."""

    bos: str = "<|begin_of_text|>"
    eos: str = "<|end_of_text|>"
    added: list[str] = field(default_factory=lambda: ["<pad>", "<audio>", "</audio>", "<video>", "</video>"])
    prompts: dict[str, str] = field(default_factory=lambda: {
        "asr": "Transcribe speech to text.",
        "vsr": "Transcribe video to text.",
        "avsr": "Transcribe speech and video to text.",
    })


@dataclass
class ModelConfig:
    """A whole Llama-AVSR / Llama-SMoP model. `audio_encoder` / `video_encoder` are None when absent."""

    name: str = "custom"
    tasks: list[str] = field(default_factory=lambda: ["avsr"])
    audio_encoder: AudioEncoderConfig | None = field(default_factory=AudioEncoderConfig)
    video_encoder: VideoEncoderConfig | None = field(default_factory=VideoEncoderConfig)
    audio_compression: CompressionConfig = field(default_factory=lambda: CompressionConfig("avg-pool", 4))
    video_compression: CompressionConfig = field(default_factory=lambda: CompressionConfig("avg-pool", 2))
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def has_audio(self) -> bool:
        return self.audio_encoder is not None

    @property
    def has_video(self) -> bool:
        return self.video_encoder is not None

    def projector_input_dim(self, modality: str) -> int:
        """Width of the tokens that reach the projector for `audio` or `video`."""
        enc = self.audio_encoder if modality == "audio" else self.video_encoder
        comp = self.audio_compression if modality == "audio" else self.video_compression
        if enc is None:
            raise ValueError(f"model has no {modality} encoder")
        return enc.d_model * (comp.rate if comp.mode == "stack" else 1)

    def validate(self) -> "ModelConfig":
        """Raise ValueError on values that cannot describe a model; return self for chaining."""
        def bad(msg: str) -> None:
            raise UsageError(f"invalid model config: {msg}")

        if not self.has_audio and not self.has_video:
            bad("a model needs an audio or a video encoder")
        if not self.tasks:
            bad("a model needs at least one task")
        for path, value in flatten(self.to_dict()).items():  # sizes and counts >= 1; factors finite, >= 0
            least = 0 if path.endswith("lora_bottleneck") else 1
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                if (isinstance(v, int) and v < least) or (isinstance(v, float) and not 0 <= v < float("inf")):
                    bad(f"{path} must be {'at least %d' % least if isinstance(v, int) else 'finite and >= 0'}, "
                        f"got {value}")
        for task in self.tasks:
            if task not in TASKS:
                bad(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
            if task in ("asr", "avsr") and not self.has_audio:
                bad(f"task {task} needs an audio encoder")
            if task in ("vsr", "avsr") and not self.has_video:
                bad(f"task {task} needs a video encoder")
        for comp in (self.audio_compression, self.video_compression):
            if comp.mode not in COMPRESSION_MODES:
                bad(f"unknown compression {comp.mode!r} (choose from {', '.join(COMPRESSION_MODES)})")
            if comp.rate < 1:
                bad(f"compression rate must be >= 1, got {comp.rate}")
        p = self.projector
        if p.kind not in PROJECTOR_KINDS:
            bad(f"unknown projector kind {p.kind!r} (choose from {', '.join(PROJECTOR_KINDS)})")
        if p.kind == "smop":
            if p.layout not in LAYOUTS:
                bad(f"unknown SMoP layout {p.layout!r} (choose from {', '.join(LAYOUTS)})")
            if not 1 <= p.top_k <= p.num_experts:
                bad(f"top_k must be in 1..num_experts, got k={p.top_k}, E={p.num_experts}")
            if p.layout in ("JEJR", "JEDR") and self.has_audio and self.has_video:
                if self.projector_input_dim("audio") != self.projector_input_dim("video"):
                    bad(f"{p.layout} shares experts across modalities, so audio and video tokens "
                        "must have the same width")
        llm = self.llm
        if llm.heads * llm.head_dim <= 0 or llm.heads % max(llm.kv_heads, 1):
            bad(f"LLM heads ({llm.heads}) must be a multiple of KV heads ({llm.kv_heads})")
        for name, enc in (("audio", self.audio_encoder), ("video", self.video_encoder)):
            if enc is not None and enc.d_model % enc.heads:
                bad(f"{name} encoder width {enc.d_model} is not divisible by {enc.heads} heads")
        return self

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        try:
            return from_data(cls, data, "config")
        except FieldError as exc:
            raise UsageError(f"invalid model config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"llm": {"hidden": 2048}} -> {"llm.hidden": 2048}; lists and prompt dicts stay leaves."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("prompts",):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating sections that are None/absent."""
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
        if not isinstance(node, dict):
            raise UsageError(f"config path {path!r} goes through a value that is not a section")
    node[keys[-1]] = value
