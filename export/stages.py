"""Export every stage graph of a model into a bundle directory, quantized as asked, as ONNX or
OpenVINO IR. ONNX graphs are always built first; OpenVINO IR is converted from them."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import onnx

from smop_edge.models.llama_smop import LlamaSMoP

from .decoder_graph import export_decoder
from .encoder_graphs import export_audio_encoder, export_video_encoder
from .projector_graph import build_projector
from .weight_compression import compress_onnx, compress_openvino


def export_stages(model: LlamaSMoP, out: Path, options, log: Callable[[str], None]) -> dict[str, Any]:
    """Write one graph per stage into `out`; return the manifest's `stages` section."""
    cfg = model.cfg
    plan: list[tuple[str, Callable[[Path], Path], str]] = []
    if cfg.has_audio:
        plan.append(("audio_encoder", lambda p: export_audio_encoder(model, p, options.audio_mode == "faithful"),
                     options.encoders))
    if cfg.has_video:
        plan.append(("video_encoder", lambda p: export_video_encoder(model, p), options.encoders))
    plan.append(("projector", lambda p: _save(build_projector(model, options.experts), p), options.experts))
    plan.append(("decoder", lambda p: export_decoder(model, p), options.llm))
    stages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = out if options.format == "onnx" else Path(tmp)
        for i, (name, build, quant) in enumerate(plan, 1):
            t0 = time.perf_counter()
            log(f"[{i}/{len(plan)}] {name}: exporting ({quant}, {options.format})")
            onnx_path = build(work / f"{name}.onnx")
            spec = _io_spec(onnx_path)
            whole_graph_bits = {"int8": 8, "int4": 4}.get(quant) if name != "projector" else None
            if options.format == "onnx":
                if whole_graph_bits:
                    compress_onnx(onnx_path, whole_graph_bits)
                file = onnx_path.name
            else:
                file = _to_openvino(onnx_path, out / f"{name}.xml", whole_graph_bits)
            stages[name] = {"file": file, **spec, "quantization": quant}
            if name == "projector":
                stages[name]["quantization"] = {"experts": quant, "router": "fp32", "layer_norm": "fp32"}
                stages[name]["input_widths"] = {m: cfg.projector_input_dim(m) for m in ("audio", "video")
                                                if getattr(cfg, f"has_{m}")}
            log(f"[{i}/{len(plan)}] {name}: done in {time.perf_counter() - t0:.1f} s")
    return stages


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


def _io_spec(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Graph inputs/outputs: name, shape (ints or symbolic names) and dtype."""
    model = onnx.load(str(path), load_external_data=False)

    def spec(values):
        result = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            result.append({"name": v.name, "shape": shape,
                           "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})
        return result

    return {"inputs": spec(model.graph.input), "outputs": spec(model.graph.output)}
