"""Mobile formats, made from a bundle's ONNX graphs. ORT format (`--format ort`): ONNX Runtime Mobile's
flatbuffer graphs, optimised once by ONNX Runtime itself (for ARM, exact as the runtime's sessions), with the
operator and type list a reduced ONNX Runtime build needs. Each converted graph is run beside its ONNX
source on the self-test input and the largest difference of its outputs recorded in the manifest."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from smop_edge.runtime.errors import UsageError
from smop_edge.runtime.manifest import Manifest
from smop_edge.runtime.sessions import GraphSession

# the operators and types the graphs use (onnxruntime.tools' config writer): the input of a minimal build,
# `build.sh --minimal_build --include_ops_by_config required_operators_and_types.config` (docs/mobile.md)
OPS_CONFIG = "required_operators_and_types.config"


class RecordingSession(GraphSession):
    """A session that keeps every output it returns, per graph (by file stem), in call order."""

    def __init__(self, inner: GraphSession, record: dict[str, list[dict[str, np.ndarray]]]) -> None:
        self._inner, self._record = inner, record
        self.name, self.input_names, self.output_names = inner.name, inner.input_names, inner.output_names

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._inner.run(feeds)
        self._record.setdefault(Path(self.name).stem, []).append({k: np.array(v) for k, v in out.items()})
        return out


def record_self_test(bundle_dir: Path, task: str, audio, frames, max_new_tokens: int):
    """The self-test through the bundle's graphs on ONNX Runtime: (tokens, every graph's outputs per call)."""
    from smop_edge.runtime.decoding import DecodingOptions
    from smop_edge.runtime.recognizer import Recognizer

    record: dict[str, list[dict[str, np.ndarray]]] = {}
    rec = Recognizer.from_bundle(bundle_dir, backend="onnxruntime",
                                 wrap_session=lambda s: RecordingSession(s, record))
    out = rec.transcribe(audio=audio, frames=frames, task=task, options=DecodingOptions(max_new_tokens=max_new_tokens))
    return out.tokens, record


def largest_differences(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> dict[str, float]:
    """Per graph, the largest absolute difference of any output over the calls both runs made."""
    found = {}
    for graph in sorted(set(a) & set(b)):
        diffs = [float(np.max(np.abs(x[k].astype(np.float64) - y[k].astype(np.float64)), initial=0.0))
                 for x, y in zip(a[graph], b[graph]) for k in x if k in y and x[k].shape == y[k].shape]
        found[graph] = max(diffs, default=float("nan"))
    return found


def convert_graph(src: Path, dst: Path) -> Path:
    """One ONNX graph -> ORT format, as onnxruntime's converter does it (the session saves its optimised graph
    as a flatbuffer; all optimisations but the x86-only NCHWc layout, int8 QDQ kernels allowed as on ARM), plus
    the runtime's exactness: int8-weight MatMuls fused with float32 activations (accuracy level 0) instead of
    the int8 activations the converter's default would bake in."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    for key, value in (("session.save_model_format", "ORT"), ("session.qdqisint8allowed", "1"),
                       ("session.qdq_matmulnbits_accuracy_level", "0")):
        so.add_session_config_entry(key, value)
    try:
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"], disabled_optimizers=["NchwcTransformer"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors
        raise UsageError(f"cannot convert {src.name} to ORT format: {str(exc).splitlines()[0][:300]}") from None
    return dst


def convert_to_ort(out: Path, manifest: Manifest, task: str, audio, frames, max_new_tokens: int,
                   log: Callable[[str], None]) -> Manifest:
    """Turn the ONNX bundle in `out` (its manifest written) into an ORT-format bundle: every graph converted,
    the operator config added, the ONNX graphs removed; the returned manifest (format "ort") carries
    `parity.ort_vs_onnx`: per graph the largest output difference on the self-test, and whether the tokens
    stayed the same."""
    graphs = [f for stage in manifest.stages.values() for f in stage.files()]
    if any((out / f"{g}.data").exists() for g in graphs):
        raise UsageError("the ORT format holds no external weights: graphs over 2 GB cannot be converted "
                         "(export a smaller model, or --format onnx)")
    onnx_tokens, onnx_outputs = record_self_test(out, task, audio, frames, max_new_tokens)
    log(f"converting {len(graphs)} graphs to ORT format")
    converted_files = []
    for g in graphs:
        converted_files.append(convert_graph(out / g, (out / g).with_suffix(".ort")))
        (out / g).unlink()
    from onnxruntime.tools.ort_format_model import create_config_from_models

    create_config_from_models(converted_files, out / OPS_CONFIG, True)
    config = (out / OPS_CONFIG).read_text().replace(f"{out.resolve()}{os.sep}", "").replace(f"{out}{os.sep}", "")
    (out / OPS_CONFIG).write_text(config)  # the graphs' names, not this machine's paths

    def renamed(stage):
        return replace(stage, file=stage.file and str(Path(stage.file).with_suffix(".ort")),
                       buckets=stage.buckets and [replace(b, file=str(Path(b.file).with_suffix(".ort")))
                                                  for b in stage.buckets])

    converted = replace(manifest, format="ort", stages={k: renamed(v) for k, v in manifest.stages.items()})
    from .bundle import write_manifest

    write_manifest(out, converted)
    ort_tokens, ort_outputs = record_self_test(out, task, audio, frames, max_new_tokens)
    errors = largest_differences(onnx_outputs, ort_outputs)
    log("ORT vs ONNX, largest output difference per graph: "
        + ", ".join(f"{g} {e:.1e}" for g, e in errors.items()) + f"; tokens {'equal' if ort_tokens == onnx_tokens else 'DIFFER'}")
    converted.parity = {**(converted.parity or {}),
                        "ort_vs_onnx": {"max_abs": errors, "tokens_equal": ort_tokens == onnx_tokens,
                                        "optimizations": "all but NCHWc, int8 QDQ allowed (ARM), accuracy level 0"}}
    return converted
