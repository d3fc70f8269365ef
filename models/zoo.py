"""Published and test configurations, built from component families.

A checkpoint is matched to these by the shapes it reveals (see `models.checkpoint`); the zoo then
supplies what shapes cannot (heads, rope, eps, LoRA scale, pre/post-LN, avg-pool rates, tasks).
Our own DEDR/JEDR entries use E=4, k=2 per pool: the paper's counts are not public, so these are our
choice, and their key names (`audio_gate`/`video_gate`, `audio_proj.experts.*`) are ours too.
"""

from __future__ import annotations

import copy
import dataclasses

from smop_edge.runtime.config import (AudioEncoderConfig, CompressionConfig, LLMConfig, ModelConfig, ProjectorConfig,
                                      RopeScalingConfig, TokensConfig, VideoEncoderConfig)
from smop_edge.runtime.errors import UsageError

# ---- component families (what a state dict cannot say about them) ------------------------------
AUDIO_ENCODERS: dict[str, AudioEncoderConfig] = {
    "whisper-tiny": AudioEncoderConfig(384, 4, 6, 1536, 80),
    "whisper-base": AudioEncoderConfig(512, 6, 8, 2048, 80),
    "whisper-small": AudioEncoderConfig(768, 12, 12, 3072, 80),
    "whisper-medium": AudioEncoderConfig(1024, 24, 16, 4096, 80),
    "whisper-large": AudioEncoderConfig(1280, 32, 20, 5120, 80),
    "whisper-large-v3": AudioEncoderConfig(1280, 32, 20, 5120, 128),
}

VIDEO_ENCODERS: dict[str, VideoEncoderConfig] = {
    "avhubert-large": VideoEncoderConfig(d_model=1024, layers=24, heads=16, ffn_dim=4096, layer_norm_first=True),
    "avhubert-base": VideoEncoderConfig(d_model=768, layers=12, heads=12, ffn_dim=3072, layer_norm_first=False),
}

LLMS: dict[str, LLMConfig] = {
    "llama-3.2-1b": LLMConfig(hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64, ffn_dim=8192,
                              tie_embeddings=True, lora_bottleneck=64,
                              rope_scaling=RopeScalingConfig(factor=32.0)),
    "llama-3.2-3b": LLMConfig(hidden=3072, layers=28, heads=24, kv_heads=8, head_dim=128, ffn_dim=8192,
                              tie_embeddings=True, lora_bottleneck=96,
                              rope_scaling=RopeScalingConfig(factor=32.0)),
    "llama-3.1-8b": LLMConfig(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn_dim=14336,
                              tie_embeddings=False, lora_bottleneck=128,
                              rope_scaling=RopeScalingConfig(factor=8.0)),
}

# Tiny sizes for tests and for the demo model: head size 16 keeps every stage small but real.
TINY_AUDIO = AudioEncoderConfig(d_model=64, layers=2, heads=4, ffn_dim=128, mel_bins=80, max_positions=1500)
TINY_VIDEO = VideoEncoderConfig(d_model=64, layers=2, heads=4, ffn_dim=128, stem_channels=8,
                                trunk_widths=[8, 16, 16, 32], pos_conv_kernel=16, pos_conv_groups=4)
TINY_LLM = LLMConfig(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, ffn_dim=128, vocab=261,
                     tie_embeddings=True, lora_bottleneck=8, lora_scale=0.125)


def _model(name: str, tasks: list[str], audio: AudioEncoderConfig | None, video: VideoEncoderConfig | None,
           projector: ProjectorConfig, llm: LLMConfig, audio_comp: CompressionConfig = None,
           video_comp: CompressionConfig = None, tokens: TokensConfig | None = None) -> ModelConfig:
    return ModelConfig(
        name=name, tasks=tasks,
        audio_encoder=copy.deepcopy(audio), video_encoder=copy.deepcopy(video),
        audio_compression=audio_comp or CompressionConfig("avg-pool", 4),
        video_compression=video_comp or CompressionConfig("avg-pool", 2),
        projector=projector, llm=copy.deepcopy(llm), tokens=copy.deepcopy(tokens) or TokensConfig(),
    )


def _smop(layout: str, hidden: int = 2048) -> ProjectorConfig:
    return ProjectorConfig(kind="smop", layout=layout, num_experts=4, top_k=2, hidden=hidden, layer_norm=True)


def _mlp(hidden: int = 2048, layer_norm: bool = True) -> ProjectorConfig:
    return ProjectorConfig(kind="mlp", hidden=hidden, layer_norm=layer_norm)


_WM, _AL = AUDIO_ENCODERS["whisper-medium"], VIDEO_ENCODERS["avhubert-large"]
_L1, _L3, _L8 = LLMS["llama-3.2-1b"], LLMS["llama-3.2-3b"], LLMS["llama-3.1-8b"]
_STACK_A, _STACK_V = CompressionConfig("stack", 3), CompressionConfig("stack", 2)

# The demo model (issue 5): narrow but real Whisper / AV-HuBERT (3-D stem + ResNet trunk) / Llama,
# trained from scratch on the synthetic alphanumeric corpus; no LoRA (the whole LLM is trained).
DEMO_AUDIO = AudioEncoderConfig(d_model=128, layers=4, heads=4, ffn_dim=512, mel_bins=80, max_positions=1500)
DEMO_VIDEO = VideoEncoderConfig(d_model=128, layers=2, heads=4, ffn_dim=512, stem_channels=8,
                                trunk_widths=[8, 16, 32, 64], pos_conv_kernel=16, pos_conv_groups=4)
DEMO_LLM = LLMConfig(hidden=128, layers=2, heads=4, kv_heads=2, head_dim=32, ffn_dim=384, vocab=325,
                     tie_embeddings=True, lora_bottleneck=0)
_TINY_VIDEO_LORA = dataclasses.replace(TINY_VIDEO, lora_bottleneck=TINY_VIDEO.d_model // 16)

# Demo model v2 (issue 40): the paper's design on pretrained parts that ship in registry wheels
# (models/pretrained): Whisper tiny.en's encoder, frozen; SmolLM2-135M-Instruct (a Llama) adapted with the
# paper's divisor LoRA (rank 32 -> bottleneck 576 / 32 = 18, scale 0.125), or a small Llama trained from
# scratch; the video encoder and SMoP projector are trained.
WHISPER_TINY = AudioEncoderConfig(d_model=384, layers=4, heads=6, ffn_dim=1536, mel_bins=80, max_positions=1500)
SMOLLM2_135M = LLMConfig(hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64, ffn_dim=1536, vocab=49157,
                         rope_theta=100000.0, rope_scaling=None, max_positions=8192, tie_embeddings=True,
                         lora_bottleneck=576 // 32, lora_scale=0.125)
# SmolLM2's own turn markers delimit the transcript (its tokenizer has no Llama-3 BOS/EOS)
SMOLLM2_TOKENS = TokensConfig(bos="<|im_start|>", eos="<|im_end|>")

ZOO: dict[str, ModelConfig] = {c.name: c for c in [
    # The released Llama-SMoP (Interspeech 2025): JEJR, E=4, k=2, avg-pool audio 4 / video 2.
    _model("smop-1b-jejr", ["avsr"], _WM, _AL, _smop("JEJR"), _L1),
    # Its Llama-AVSR baseline: an MLP + LayerNorm projector per modality, same rates.
    _model("llama-avsr-1b", ["avsr"], _WM, _AL, _mlp(), _L1),
    _model("llama-avsr-1b-asr", ["asr"], _WM, None, _mlp(), _L1),
    _model("llama-avsr-1b-vsr", ["vsr"], None, _AL, _mlp(), _L1),
    # Older Llama-AVSR 8B releases stack consecutive frames (rates are read from projector widths).
    _model("llama-avsr-8b-asr", ["asr"], _WM, None, _mlp(layer_norm=False), _L8, _STACK_A, _STACK_V),
    _model("llama-avsr-8b-vsr", ["vsr"], None, _AL, _mlp(layer_norm=False), _L8, _STACK_A, _STACK_V),
    _model("llama-avsr-8b-avsr", ["avsr"], _WM, _AL, _mlp(layer_norm=False), _L8, _STACK_A, _STACK_V),
    # Our DEDR / JEDR configurations (E=4, k=2 per pool: our choice).
    _model("smop-1b-dedr", ["avsr"], _WM, _AL, _smop("DEDR"), _L1),
    _model("smop-1b-jedr", ["avsr"], _WM, _AL, _smop("JEDR"), _L1),
    _model("smop-3b-dedr", ["avsr"], _WM, _AL, _smop("DEDR"), _L3),
    _model("smop-3b-jedr", ["avsr"], _WM, _AL, _smop("JEDR"), _L3),
    # The demo models: SMoP DEDR (E=4, k=2) and the MLP-projector baseline; one model serves all tasks.
    _model("demo-dedr", ["asr", "vsr", "avsr"], DEMO_AUDIO, DEMO_VIDEO, _smop("DEDR", 256), DEMO_LLM),
    _model("demo-mlp", ["asr", "vsr", "avsr"], DEMO_AUDIO, DEMO_VIDEO, _mlp(256), DEMO_LLM),
    # Demo model v2: a frozen Whisper tiny.en encoder with SmolLM2-135M + LoRA, or with the small Llama.
    _model("demo-v2-smollm", ["asr", "vsr", "avsr"], WHISPER_TINY, DEMO_VIDEO, _smop("DEDR", 1024), SMOLLM2_135M,
           tokens=SMOLLM2_TOKENS),
    _model("demo-v2-small", ["asr", "vsr", "avsr"], WHISPER_TINY, DEMO_VIDEO, _smop("DEDR", 256), DEMO_LLM),
    # Tiny configurations for tests (same architecture, toy widths).
    _model("tiny-jejr", ["avsr"], TINY_AUDIO, TINY_VIDEO, _smop("JEJR", 96), TINY_LLM),
    _model("tiny-jedr", ["avsr"], TINY_AUDIO, TINY_VIDEO, _smop("JEDR", 96), TINY_LLM),
    _model("tiny-dedr", ["asr", "vsr", "avsr"], TINY_AUDIO, TINY_VIDEO, _smop("DEDR", 96), TINY_LLM),
    _model("tiny-mlp", ["avsr"], TINY_AUDIO, TINY_VIDEO, _mlp(96), TINY_LLM),
    _model("tiny-stack", ["avsr"], TINY_AUDIO, TINY_VIDEO, _mlp(96, layer_norm=False), TINY_LLM,
           CompressionConfig("stack", 3), CompressionConfig("stack", 2)),
    _model("tiny-asr", ["asr"], TINY_AUDIO, None, _mlp(96), TINY_LLM),
    _model("tiny-vsr", ["vsr"], None, _TINY_VIDEO_LORA, _mlp(96), TINY_LLM),
]}


def get(name: str) -> ModelConfig:
    """A fresh copy of the zoo entry `name`."""
    if name not in ZOO:
        raise UsageError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}")
    return copy.deepcopy(ZOO[name])
