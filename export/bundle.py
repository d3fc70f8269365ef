"""`smop-edge export`: checkpoint -> bundle directory (one graph per stage, tokenizer, embeddings,
self-test, manifest with parity figures and sha256 sums). Build -> export -> verify, as sherpa-onnx."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from smop_edge.runtime import features
from smop_edge.runtime.bundle import sha256_file
from smop_edge.runtime.errors import ParityError, UsageError
from smop_edge.runtime.manifest import (AUDIO_MODES, FORMAT_BACKEND, FORMATS, MANIFEST, MANIFEST_DIGEST,
                                        SCHEMA_VERSION, Embeddings, Manifest, Preprocessing, Quantization, SelfTest,
                                        StaticShapes, TokenizerEntry)
from smop_edge.runtime.prompt import TASK_MODALITIES, SpecialIds

from .quantize import ENCODER_MODES, EXPERT_MODES, LLM_MODES

SELF_TEST_FILE = "self_test.npz"


@dataclass
class ExportOptions:
    """What `smop-edge export` builds (defaults are the deployment defaults)."""

    format: str = "onnx"
    experts: str = "int8"
    llm: str = "int8"
    encoders: str = "fp32"
    audio_mode: str = "faithful"
    static: bool = False
    force: bool = False
    self_test_seconds: float = 2.0
    self_test_tokens: int = 16
    parity: bool = True  # False: no parity figures or self-test reference (then `verify` cannot pass)
    allow_drift: bool = False  # keep a bundle whose parity breaks the thresholds (parity.judge)
    # bundles whose graphs are linked instead of rebuilt where a stage's graph would be the same (same
    # model apart from the projector, format, stage quantization and audio mode): the benchmark's
    # projector and LLM variants share their encoders this way
    reuse: tuple[str, ...] = ()
    # --static: encoder length buckets, projector token chunk, decoder chunk and KV-cache capacity
    audio_buckets: tuple[int, ...] = (1000, 3000)  # mel frames (10 s, 30 s); fast mode only
    video_buckets: tuple[int, ...] = (250, 750)  # frames (10 s, 30 s at 25 fps)
    projector_chunk: int = 32
    decoder_chunk: int = 8
    kv_capacity: int = 1024

    def validate(self) -> None:
        for name, value, allowed in (("format", self.format, FORMATS), ("experts", self.experts, EXPERT_MODES),
                                     ("llm", self.llm, LLM_MODES), ("encoders", self.encoders, ENCODER_MODES),
                                     ("audio mode", self.audio_mode, AUDIO_MODES)):
            if value not in allowed:
                raise UsageError(f"unsupported {name} {value!r} (choose from {', '.join(allowed)})")
        if self.format == "litert" and not self.static:
            raise UsageError("LiteRT graphs are static: the litert format exports the static bundle (--static)")
        if self.format in ("litert", "executorch") and {self.experts, self.llm, self.encoders} - {"fp32", "int8"}:
            raise UsageError(f"{self.format} bundles take fp32 or int8 weights (the target's own int8 quantizer)")
        if self.static:
            for name, sizes in (("audio", self.audio_buckets), ("video", self.video_buckets)):
                if not sizes or sorted(sizes) != list(sizes) or sizes[0] < 1:
                    raise UsageError(f"{name} buckets must be increasing positive sizes, got {sizes}")
            if self.audio_buckets[-1] > features.N_FRAMES_30S:
                raise UsageError(f"audio buckets cannot exceed {features.N_FRAMES_30S} mel frames (30 s)")
            if self.decoder_chunk < 1 or self.kv_capacity < 2 * self.decoder_chunk or self.projector_chunk < 1:
                raise UsageError("static decoder needs chunk >= 1 and a KV capacity of at least two chunks")


def _prepare_out(out: Path, force: bool, need_bytes: int) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"output directory {out} is not empty (use --force to replace the bundle in it)")
        if not (out / MANIFEST).is_file() or Path.cwd().resolve().is_relative_to(out.resolve()):
            raise UsageError(f"--force replaces only a bundle directory (one with {MANIFEST}) that is not the "
                             f"current directory or above it: {out} is not one")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise UsageError(f"not enough disk for the export: about {need_bytes / 1e9:.1f} GB needed, "
                         f"{free / 1e9:.1f} GB free at {out}")


def self_test_input(cfg, seconds: float, seed: int = 0) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """A short synthetic input for the model's richest task (a trained model's bundle may carry a real
    clip instead): chirps + noise for audio, smooth random mouth frames for video."""
    task = next(t for t in ("avsr", "asr", "vsr") if t in cfg.tasks)
    rng = np.random.default_rng(seed)
    n_frames = int(seconds * features.VIDEO_FPS)
    audio = frames = None
    if "audio" in TASK_MODALITIES[task]:
        t = np.arange(n_frames * features.SAMPLES_PER_VIDEO_FRAME) / features.SAMPLE_RATE
        audio = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    if "video" in TASK_MODALITIES[task]:
        base = rng.standard_normal((n_frames, 11, 11)).astype(np.float32)
        frames = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)
    return task, audio, frames


def export_bundle(model, tokenizer, out: Path, options: ExportOptions, source: dict[str, Any],
                  log: Callable[[str], None] | None = None) -> Manifest:
    """Write the bundle for `model` (a LlamaSMoP, in its checkpoint's dtype: each stage is cast to fp32
    only while its graph is built) and `tokenizer` (with the AVSR tokens). Parity is then measured
    against the fp32 model."""
    from smop_edge.models.reference import ReferenceRecognizer
    from smop_edge.runtime.recognizer import Recognizer

    from . import parity
    from .stages import export_stages, release_memory

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    options.validate()
    out = Path(out)
    n_params = sum(p.numel() for p in model.parameters())
    _prepare_out(out, options.force, need_bytes=int(n_params * 4 * 2.5))
    cfg = model.cfg
    started = time.perf_counter()
    stages = export_stages(model, out, options, log)

    tokenizer.save(out / "tokenizer.json")
    emb_dtype = np.float32 if options.llm == "fp32" else np.float16
    np.save(out / "embed_tokens.npy", model.llm.get_input_embeddings().weight.detach().float().numpy().astype(emb_dtype))
    task, audio, frames = self_test_input(cfg, options.self_test_seconds)
    np.savez(out / SELF_TEST_FILE, **{k: v for k, v in (("audio", audio), ("frames", frames)) if v is not None})

    manifest = Manifest(
        schema_version=SCHEMA_VERSION, created_by=_versions(), source=source,
        format="onnx" if options.format == "ort" else options.format,  # ort: converted below, once written
        audio_mode=options.audio_mode, model=cfg,
        tokenizer=TokenizerEntry("tokenizer.json", asdict(SpecialIds.from_tokenizer(
            tokenizer, cfg.tokens.bos, cfg.tokens.eos, cfg.tokens.added)), cfg.tokens.prompts),
        preprocessing=Preprocessing(pad_to_30s=options.audio_mode == "faithful",
                                    mel_bins=cfg.audio_encoder.mel_bins if cfg.has_audio else None),
        stages=stages,
        embeddings=Embeddings("embed_tokens.npy", np.dtype(emb_dtype).name, [cfg.llm.vocab, cfg.llm.hidden]),
        quantization=Quantization(
            experts=options.experts, router="fp32", layer_norm="fp32", llm=options.llm, encoders=options.encoders,
            # ONNX Runtime computes next to 8- and 4-bit weights in int8 (see weight_compression)
            activations={part: "int8" if options.format in ("onnx", "ort") and mode in ("int8", "int4") else "fp32"
                         for part, mode in (("llm", options.llm), ("encoders", options.encoders))}),
        self_test=SelfTest(SELF_TEST_FILE, task, options.self_test_tokens),
        static=StaticShapes(list(options.audio_buckets) if options.audio_mode == "fast" else [3000],
                            list(options.video_buckets), options.projector_chunk, options.decoder_chunk,
                            options.kv_capacity) if options.static else None,
    )
    digest = write_manifest(out, manifest)
    if options.format == "ort":
        from .mobile import convert_to_ort

        manifest = convert_to_ort(out, manifest, task, audio, frames, options.self_test_tokens, log)
        digest = write_manifest(out, manifest)
    if not options.parity:
        log(f"done in {time.perf_counter() - started:.1f} s: {out} (parity not measured); manifest sha256 {digest}")
        return manifest

    release_memory()
    log("parity: running every graph against the torch reference")
    ref = ReferenceRecognizer(model.float(), tokenizer, options.audio_mode)
    backend = FORMAT_BACKEND[options.format]
    if backend == "executorch":
        from . import executorch  # noqa: F401 - registers the backend that runs .pte programs
    rec = Recognizer.from_bundle(out, backend=backend)
    figures = parity.measure(ref, rec, audio, frames, task, options.self_test_tokens)
    failures = parity.judge(figures, options.experts, options.llm, options.encoders)
    e2e = figures["end_to_end"]
    manifest.parity = {**(manifest.parity or {}), "backend": backend, "passed": not failures, "failures": failures,
                       **figures}
    test = manifest.self_test
    test.reference_tokens, test.reference_text = e2e["reference_tokens"], e2e["reference_text"]
    test.bundle_tokens, test.bundle_text = e2e["bundle_tokens"], e2e["bundle_text"]
    digest = write_manifest(out, manifest)
    if failures and not options.allow_drift:
        shutil.rmtree(out)
        raise ParityError(f"parity with the torch reference broken, {out} removed (--allow-drift keeps it): "
                          + "; ".join(failures))
    log(f"done in {time.perf_counter() - started:.1f} s: {out} (self-test tokens "
        f"{'equal' if e2e['tokens_equal'] else 'DIFFER'}, agreement {e2e['token_agreement']:.2f}"
        f"{_flip_note(e2e) if not e2e['tokens_equal'] else ''}"
        f"{'' if not failures else ', DRIFT kept: ' + '; '.join(failures)}); manifest sha256 {digest}")
    return manifest


def _flip_note(e2e: dict) -> str:
    """Where differing self-test tokens part from torch's, at what margin, and how (see parity.judge)."""
    d = e2e.get("first_difference")
    if not d:
        return ""
    took = "its runner-up" if d["bundle_took_runner_up"] else "another token"
    return f", from step {d['step']}: torch's top-2 margin {d['reference_margin']:.3f}, the bundle took {took}"


def write_manifest(out: Path, manifest: Manifest) -> str:
    """The manifest with the sha256 of every file in `out`; returns the manifest's own sha256."""
    return manifest.write(out, {p.name: sha256_file(p) for p in sorted(out.iterdir())
                         if p.is_file() and p.name not in (MANIFEST, MANIFEST_DIGEST)})


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("smop-edge", "torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions
