"""Export every stage graph of a model into a bundle directory, quantized as asked, as ONNX or
OpenVINO IR. ONNX graphs are always built first; OpenVINO IR is converted from them."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from smop_edge.models.llama_smop import LlamaSMoP
from smop_edge.runtime.bundle import Bundle, load_bundle
from smop_edge.runtime.errors import BundleError
from smop_edge.runtime.manifest import BucketGraph, Stage, TensorSpec

from .decoder_graph import export_decoder
from .encoder_graphs import export_audio_encoder, export_video_encoder, share_weights
from .executorch import int8_weights
from .projector_graph import build_projector, export_dense_projector
from .weight_compression import compress_litert, compress_onnx, compress_openvino

Build = Callable[[Path], Path]

# which model parts each stage's graph is built from
STAGE_MODULES = {"audio_encoder": ("audio_encoder",), "video_encoder": ("video_encoder",),
                 "projector": ("audio_proj", "video_proj", "audiovisual_proj"), "decoder": ("llm",)}


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise), so that
    one stage's multi-GB temporaries do not add to the next stage's peak."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@contextlib.contextmanager
def in_float32(model: LlamaSMoP, stage: str):
    """Cast only the parts `stage` needs to fp32 while its graph is built, then back: a bf16
    checkpoint is never held in fp32 as a whole during export (bf16 -> fp32 -> bf16 is exact)."""
    parts = [getattr(model, n) for n in STAGE_MODULES[stage] if getattr(model, n, None) is not None]
    dtypes = [next(p.parameters()).dtype for p in parts]
    for part in parts:
        part.float()
    try:
        yield
    finally:
        for part, dtype in zip(parts, dtypes):
            part.to(dtype)
        release_memory()


def weights_digest(model: LlamaSMoP, stage: str) -> str:
    """sha256 of the tensors (names, dtypes, bytes) that `stage`'s graph is built from: two exports link a
    stage's graph only when this is equal (equal configs alone would link another checkpoint's weights)."""
    import hashlib

    digest = hashlib.sha256()
    for module in STAGE_MODULES[stage]:
        part = getattr(model, module, None)
        if part is None:
            continue
        for name, tensor in sorted(part.state_dict().items()):
            t = tensor.detach().contiguous().reshape(-1)
            digest.update(f"{module}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _plan(model: LlamaSMoP, options) -> list[tuple[str, int | None, Build, str]]:
    """(stage, bucket size or None, builder, quantization) for every graph file of the bundle."""
    cfg = model.cfg
    faithful = options.audio_mode == "faithful"
    plan: list[tuple[str, int | None, Build, str]] = []
    if cfg.has_audio:
        if options.static and not faithful:
            plan += [("audio_encoder", b, (lambda p, b=b: export_audio_encoder(model, p, False, b)), options.encoders)
                     for b in options.audio_buckets]
        else:  # faithful mode is static already: exactly 3000 mel frames
            plan.append(("audio_encoder", None, lambda p: export_audio_encoder(model, p, faithful), options.encoders))
    if cfg.has_video:
        if options.static:
            plan += [("video_encoder", b, (lambda p, b=b: export_video_encoder(model, p, b)), options.encoders)
                     for b in options.video_buckets]
        else:
            plan.append(("video_encoder", None, lambda p: export_video_encoder(model, p), options.encoders))
    chunk = options.projector_chunk if options.static else None
    if options.format in ("litert", "executorch"):  # formats made from torch: the projector's torch form
        plan.append(("projector", None, lambda p: export_dense_projector(model, p, chunk), options.experts))
    else:
        plan.append(("projector", None, lambda p: _save(build_projector(
            model, options.experts, {"audio": chunk, "video": chunk} if chunk else None), p), options.experts))
    static_decoder = {"chunk": options.decoder_chunk, "capacity": options.kv_capacity} if options.static else None
    plan.append(("decoder", None, lambda p: export_decoder(model, p, static_decoder), options.llm))
    return plan


def export_stages(model: LlamaSMoP, out: Path, options, log: Callable[[str], None]) -> dict[str, Stage]:
    """Write one graph per stage (one per bucket for static encoders) into `out`; return the
    manifest's `stages` section."""
    cfg = model.cfg
    plan = _plan(model, options)
    stages: dict[str, Stage] = {}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        from_onnx = options.format in ("onnx", "ort")  # ORT-format graphs are converted from ONNX ones (export.mobile)
        # torch -> LiteRT / ExecuTorch directly (export_module picks the converter by the file's suffix)
        direct = {"litert": "tflite", "executorch": "pte"}.get(options.format)
        work = out if from_onnx or direct else Path(tmp)
        first_bucket: dict[str, Path] = {}
        for i, (name, bucket, build, quant) in enumerate(plan, 1):
            t0 = time.perf_counter()
            what = f"{name}" + (f" (bucket {bucket})" if bucket else "")
            weights = None if name == "projector" else weights_digest(model, name)
            shared = None if options.static or weights is None or options.format == "ort" else \
                _reusable(cfg, name, quant, weights, options)
            if shared:
                stages[name] = link_stage(shared, name, out)
                log(f"[{i}/{len(plan)}] {what}: linked from {shared.path}")
                continue
            log(f"[{i}/{len(plan)}] {what}: exporting ({quant}, {options.format})")
            stem = f"{name}.{bucket}" if bucket else name
            with in_float32(model, name), int8_weights(direct == "pte" and quant == "int8"):
                graph = build(work / f"{stem}.{direct or 'onnx'}")
            spec = _io_spec(graph)
            bits = {"int8": 8, "int4": 4}.get(quant) if name != "projector" else None
            if direct:
                if direct == "tflite" and quant == "int8":
                    compress_litert(graph)
                file = graph.name
            elif from_onnx:
                if bits:
                    compress_onnx(graph, bits)
                elif bucket and name in first_bucket:
                    share_weights(first_bucket[name], graph)
                first_bucket.setdefault(name, graph)
                file = graph.name
            else:
                file = _to_openvino(graph, out / f"{stem}.xml", bits)
            if bucket:
                stages.setdefault(name, Stage(quant, buckets=[], weights_sha256=weights)).buckets.append(
                    BucketGraph(file, *spec, size=bucket))
            elif name == "projector":
                stages[name] = Stage({"experts": quant, "router": "fp32", "layer_norm": "fp32"}, file, *spec,
                                     input_widths={m: cfg.projector_input_dim(m) for m in ("audio", "video")
                                                   if getattr(cfg, f"has_{m}")})
            else:
                stages[name] = Stage(quant, file, *spec, weights_sha256=weights)
            release_memory()
            log(f"[{i}/{len(plan)}] {what}: done in {time.perf_counter() - t0:.1f} s")
    return stages


def _reusable(cfg, stage: str, quant: str, weights: str, options) -> Bundle | None:
    """A bundle in `options.reuse` whose `stage` graph is the one this export would build: same model
    apart from the projector, same weights for the stage, same format and quantization, same audio mode
    for the audio encoder."""
    def body(config: dict) -> dict:
        return {k: v for k, v in config.items() if k not in ("name", "projector")}

    for folder in options.reuse:
        try:
            bundle = load_bundle(folder, verify=False)
        except BundleError:
            continue
        m = bundle.manifest
        if (stage in bundle.stages and not m.static and m.format == options.format
                and bundle.stages[stage].quantization == quant and bundle.stages[stage].weights_sha256 == weights
                and body(bundle.config.to_dict()) == body(cfg.to_dict())
                and (stage != "audio_encoder" or m.audio_mode == options.audio_mode)):
            return bundle
    return None


def link_stage(bundle: Bundle, stage: str, out: Path) -> Stage:
    """Hard-link (copy where linking fails) a stage's files from `bundle` into `out`; its manifest entry."""
    for src in bundle.stage_files(stage):
        try:
            os.link(src, out / src.name)
        except OSError:
            shutil.copy2(src, out / src.name)
    return bundle.stages[stage]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _to_openvino(onnx_path: Path, xml: Path, bits: int | None) -> str:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if bits:
        model = compress_openvino(model, bits)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml.name


def _io_spec(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs/outputs: name, shape (ints or symbolic names) and dtype."""
    if path.suffix == ".pte":  # a program has no names: the specs its exporter kept
        from .executorch import WRITTEN

        return WRITTEN.pop(path)
    if path.suffix == ".tflite":  # the signature of the LiteRT graph, as its interpreter reads it
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(path)).get_signature_runner()
        return tuple([TensorSpec(name, [int(d) for d in x["shape"]], np.dtype(x["dtype"]).name)
                      for name, x in details.items()]
                     for details in (runner.get_input_details(), runner.get_output_details()))
    model = onnx.load(str(path), load_external_data=False)

    def spec(values):
        result = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            result.append(TensorSpec(v.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name))
        return result

    return spec(model.graph.input), spec(model.graph.output)
