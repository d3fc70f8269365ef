"""`smop-edge bench`: per-stage latency, real-time factor and peak memory, one factor at a time
around the deployment default (ONNX Runtime, int8 experts, int8 LLM, greedy), against the faithful
torch reference and against the machine's own limits measured in the same run.

Every configuration runs in its own process (`bench_worker`), so peak RSS is its own; rounds visit the
configurations in a rotating order, so that a slow spell of a noisy machine spreads over all of them.
Bundle variants are exported once into the work folder and reused by later runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

from smop_edge.runtime import features, media
from smop_edge.runtime.bundle import Bundle, load_bundle, sha256_file
from smop_edge.runtime.errors import BundleError, UsageError
from smop_edge.runtime.manifest import BACKEND_FORMATS, resolve_backend
from smop_edge.runtime.scoring import corpus_wer

from . import machine_limits
from .peer import ENGINE as PEER_ENGINE
from .board import BoardInfo, board_info

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """One configuration: which engine runs which export of which model, and how it decodes."""

    name: str
    factor: str  # what this configuration varies from the deployment default
    engine: str = "onnxruntime"  # onnxruntime | openvino (an ONNX bundle) | torch | faster-whisper (the peer)
    model: str = "smop"  # smop (the model itself) | mlp (its MLP-projector baseline) | jejr, jedr, dedr (layouts)
    experts: str = "int8"
    llm: str = "int8"
    encoders: str = "fp32"
    audio_mode: str = "fast"
    exact: bool = True  # False: the backend's int8-activation kernels next to int8/int4 weights
    precision: str = "f32"  # OpenVINO's inference precision (bf16: AMX / AVX512-BF16 units where the CPU has them)
    beams: int = 1
    fixed_steps: bool = False  # decode exactly --decode-steps tokens, EOS ignored

    @property
    def needs_bundle(self) -> bool:
        """Whether it runs one of our bundles (not the torch reference or the peer)."""
        return self.engine not in ("torch", PEER_ENGINE)

    def bundle_key(self) -> str:
        """Both engines run the same ONNX bundle (as `--backend` does), so the key leaves the engine out."""
        enc = "" if self.encoders == "fp32" else f"-encoders_{self.encoders}"
        return f"{self.model}-onnx-experts_{self.experts}-llm_{self.llm}{enc}-{self.audio_mode}"


ENGINES = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}  # the runtime's engines for ONNX bundles


def plan_configs(audio_mode: str, backends: list[str], random_init: bool = False,
                 layouts: tuple[str, ...] = (), fmt: str = "onnx") -> list[BenchConfig]:
    """The deployment default (the engine `--backend auto` picks here, if `backends` allows it) and one
    variation per factor (the other engine and audio mode included). With random weights every
    configuration decodes a fixed number of tokens (there is no meaningful EOS), so the default itself is
    the SMoP side of the projector comparison. `fmt`: the given bundle's format (an ORT-format bundle runs
    on ONNX Runtime alone)."""
    engine = resolve_backend("auto", fmt)
    candidates = list(ENGINES) if fmt == "onnx" else [engine]
    if engine not in backends:
        engine = next((b for b in candidates if b in backends), engine)
    base = BenchConfig("default", f"deployment default ({ENGINES[engine]})", engine=engine, audio_mode=audio_mode)
    other_mode = "faithful" if audio_mode == "fast" else "fast"
    configs = [
        base,
        BenchConfig("torch-fp32", "torch reference (fp32, KV cache)", engine="torch", experts="fp32", llm="fp32",
                    audio_mode=audio_mode),
        replace(base, name="fp32", factor="all weights fp32", experts="fp32", llm="fp32"),
        replace(base, name="llm-fp32", factor="int8 experts only (LLM fp32)", llm="fp32"),
        replace(base, name="llm-int4", factor="int4 LLM", llm="int4"),
        replace(base, name="encoders-int8", factor="int8 encoders", encoders="int8"),
        replace(base, name="fast-math", factor="int8 activations (inexact)", exact=False),
        *([replace(base, name="bf16", factor="OpenVINO in bf16 (inexact)", precision="bf16"),
           # int8 encoders ran slower than fp32 ones in bf16 (paper scale: audio 225 vs 148 ms), an int4 LLM's
           # decode steps (f32, int8 activations) faster than int8's (59 vs 86 ms): docs/benchmarks.md
           replace(base, name="fastest", factor="bf16, int8 activations, int4 LLM (inexact)", precision="bf16",
                   exact=False, llm="int4")] if engine == "openvino" else []),
        *(replace(base, name=e, factor=ENGINES[e], engine=e) for e in candidates if e != engine),
        replace(base, name=f"audio-{other_mode}", factor=f"{other_mode} audio mode", audio_mode=other_mode),
        replace(base, name="beam4", factor="beam search, 4 beams", beams=4),
        replace(base, name="smop-fixed", factor="SMoP, fixed decode steps", fixed_steps=True),
        replace(base, name="mlp-fixed", factor="MLP projector, fixed decode steps", model="mlp", fixed_steps=True),
    ] + [replace(base, name=f"{x.lower()}-fixed", factor=f"SMoP {x.upper()}, fixed decode steps", model=x.lower(),
                 fixed_steps=True) for x in layouts]
    if random_init:
        configs = [replace(c, fixed_steps=True) for c in configs if c.name != "smop-fixed"]
    else:  # the peer has no random-weight twin: it is there beside a trained model
        configs.append(BenchConfig("peer-whisper", "the peer: Whisper tiny.en (faster-whisper, int8, greedy), "
                                   "audio only", engine=PEER_ENGINE, experts="-", llm="-", audio_mode="-"))
    return [c for c in configs if c.engine in backends]


@dataclass
class BenchOptions:
    bundle: Path | None = None  # a trained model's bundle (its checkpoint is found next to it) ...
    zoo: str | None = None  # ... or a zoo configuration with random weights
    checkpoint: Path | None = None  # the SMoP checkpoint (default: the bundle's source next to it)
    mlp_checkpoint: Path | None = None  # default: the same model with an MLP projector, random weights
    samples: Path | None = None  # manifest of clips (default: samples/ next to the bundle)
    audio_mode: str | None = None  # --zoo: the deployment default's audio mode (default faithful)
    layouts: tuple[str, ...] = ()  # more SMoP layouts to compare with the MLP baseline (random weights)
    seconds: list[float] = field(default_factory=lambda: [2.0, 5.0, 10.0])
    backends: list[str] = field(default_factory=lambda: ["torch", "onnxruntime", "openvino"])
    only: list[str] | None = None  # configuration names
    threads: int = 2
    repeats: int = 3
    rounds: int = 2
    decode_steps: int = 16
    max_new_tokens: int = 32
    task: str | None = None
    work: Path = Path("build/bench")


# ---- sources: checkpoints, bundle variants, inputs --------------------------------------------------
NO_CHECKPOINT = ("needs the checkpoint the bundle came from (not found next to it: --checkpoint) and the [export] "
                 "extra; --preset pi runs the bundle alone")
@dataclass
class Source:
    """The model under test: its config, checkpoint (torch and exports), tokenizer, the deployment
    audio mode, and a given bundle that serves the configurations it matches."""

    config: dict[str, Any]
    checkpoint: Path | None  # None: only the given bundle can run (no torch row, no exported variants)
    tokenizer: Path
    audio_mode: str
    bundle: Bundle | None
    random_init: bool

    @property
    def folder(self) -> str:
        """A name for this model's exports in the work folder: config, the checkpoint's content, and the
        source of the code an export runs (export, models, runtime): a changed checkpoint or exporter makes
        new exports instead of reusing stale ones."""
        import hashlib

        import smop_edge.export as export

        code = hashlib.sha256()
        root = Path(export.__file__).parent.parent
        for path in sorted(p for part in ("export", "models", "runtime") for p in (root / part).rglob("*.py")):
            code.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
        return f"{self.config['name']}-{sha256_file(self.checkpoint)[:12]}-{code.hexdigest()[:8]}"


def bundle_source(opts: BenchOptions) -> Source:
    bundle = load_bundle(opts.bundle)
    checkpoint = opts.checkpoint
    if not checkpoint:
        name = bundle.manifest.source.get("checkpoint")
        checkpoint = next((f / name for f in (bundle.path, bundle.path.parent) if name and (f / name).is_file()), None)
    return Source(bundle.config.to_dict(), checkpoint, bundle.file(bundle.manifest.tokenizer.file),
                  bundle.manifest.audio_mode, bundle, False)


def zoo_source(opts: BenchOptions, log: Log) -> Source:
    """A random-weight checkpoint (bf16) and base tokenizer of a zoo configuration, made once in the
    work folder (a real-size one is a 4 GB file: free disk is checked first)."""
    import shutil

    import torch

    from smop_edge.export.source import load_source
    from smop_edge.models import zoo
    from smop_edge.models.checkpoint import save_checkpoint
    from smop_edge.models.tokenizer_builder import base_tokenizer_for

    config = zoo.get(opts.zoo)
    folder = opts.work / f"zoo-{opts.zoo}"
    checkpoint, tokenizer = folder / "checkpoint.pth", folder / "tokenizer.json"
    tok = base_tokenizer_for(config)  # sizes a tiny configuration's vocabulary
    if not checkpoint.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tok.save(str(tokenizer))
        model, _, _ = load_source(config, tokenizer, seed=0)
        need = sum(p.numel() for p in model.parameters()) * 2 * 8  # checkpoint + about 7 bundles' graphs
        free = shutil.disk_usage(folder).free
        if free < need:
            raise UsageError(f"not enough disk for a benchmark of {opts.zoo}: about {need / 1e9:.0f} GB needed, "
                             f"{free / 1e9:.0f} GB free at {folder}")
        log(f"writing random weights of {opts.zoo} to {checkpoint}")
        save_checkpoint(model, checkpoint.with_suffix(".tmp.pth"), dtype=torch.bfloat16)
        checkpoint.with_suffix(".tmp.pth").rename(checkpoint)
    return Source(config.to_dict(), checkpoint, tokenizer, opts.audio_mode or "faithful", None, True)


def _export_variant(checkpoint: str | None, config: dict | None, tokenizer: str, out: str, options: dict,
                    base: str | None = None) -> None:
    """Runs in a fresh process: a checkpoint -> bundle; or a model of `config` whose encoders and LLM are
    those of checkpoint `base` (in its dtype) and whose projector is random: the variants differ in the
    projector alone, and their encoder and decoder graphs are truly the base's, so they may be linked."""
    from smop_edge.export.bundle import ExportOptions, export_bundle
    from smop_edge.export.source import load_source
    from smop_edge.export.stages import STAGE_MODULES
    from smop_edge.models.checkpoint import load_model
    from smop_edge.runtime.config import ModelConfig

    model, tok, source = load_source(checkpoint or ModelConfig.from_dict(config), tokenizer, seed=0)
    if base and not checkpoint:
        donor, _ = load_model(base, dtype=None)
        model.to(next(donor.parameters()).dtype)
        for name in (n for stage in ("audio_encoder", "video_encoder", "decoder") for n in STAGE_MODULES[stage]):
            if getattr(model, name, None) is not None:
                getattr(model, name).load_state_dict(getattr(donor, name).state_dict())
        source = {**source, "encoders_and_llm_from": Path(base).name}
    export_bundle(model, tok, Path(out), ExportOptions(force=True, **options), source, log=lambda msg: None)


def variant_config(config: dict, model: str) -> dict:
    """The model `model` names beside a SMoP configuration: `mlp` (the MLP-projector baseline) or a
    SMoP layout (`jejr`, `jedr`, `dedr`); same encoders, rates and LLM."""
    cfg = json.loads(json.dumps(config))
    if model == "mlp":
        cfg["projector"].update(kind="mlp", layout="JEJR")
    else:
        cfg["projector"].update(kind="smop", layout=model.upper())
    cfg["name"] = f"{config['name']}-{model}"
    return cfg


def _matches(bundle: Bundle, c: BenchConfig) -> bool:
    """Whether `bundle` was exported the way configuration `c` asks (its model aside)."""
    m = bundle.manifest
    return (m.format in BACKEND_FORMATS[c.engine] and m.quantization.experts == c.experts
            and m.quantization.llm == c.llm and m.quantization.encoders == c.encoders
            and m.audio_mode == c.audio_mode and not m.static)


def bundles_for(configs: list[BenchConfig], src: Source, opts: BenchOptions, log: Log,
                errors: dict[str, str]) -> dict[str, Path]:
    """Bundle folder per configuration key: the given bundle where it matches, else an export into the
    work folder, kept for later runs. Exports link the graphs they share with earlier ones (encoders
    across LLM and projector variants, the LLM across projector variants) and skip parity (the
    benchmark compares transcripts with torch itself). Variants that fail to export go into `errors`."""
    out: dict[str, Path] = {}
    for c in configs:
        key = c.bundle_key()
        if not c.needs_bundle or key in out:
            continue
        if src.bundle and c.model == "smop" and _matches(src.bundle, c):
            out[key] = src.bundle.path
            continue
        if src.checkpoint is None:
            errors[key] = NO_CHECKPOINT
            continue
        root = opts.work / src.folder
        folder = root / key
        try:
            if _matches(load_bundle(folder), c):  # the folder name carries the model
                out[key] = folder
                continue
        except BundleError:  # not exported yet (or an interrupted export): export it
            pass
        log(f"exporting {key} into {folder}")
        t0 = time.perf_counter()
        ckpt = src.checkpoint if c.model == "smop" else (opts.mlp_checkpoint if c.model == "mlp" else None)
        config = None if ckpt else variant_config(src.config, c.model)
        done = [*out.values(), *(p for p in root.iterdir() if p.is_dir() and p != folder)] if root.is_dir() else []
        options = {"format": "onnx", "experts": c.experts, "llm": c.llm, "encoders": c.encoders,
                   "audio_mode": c.audio_mode,
                   "parity": False, "reuse": tuple(str(p) for p in dict.fromkeys(done))}
        try:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                pool.submit(_export_variant, str(ckpt) if ckpt else None, config, str(src.tokenizer), str(folder),
                            options, str(src.checkpoint)).result()
        except Exception as exc:  # one failed variant (e.g. out of memory) must not end an hour-long run
            errors[key] = f"export failed: {type(exc).__name__}: {exc}"
            log(f"{key}: {errors[key]}; its configurations are skipped")
            continue
        log(f"exported {key} in {time.perf_counter() - t0:.0f} s")
        out[key] = folder
    return out


@dataclass
class Input:
    name: str
    media: Path
    npz: Path
    seconds: float
    text: str | None = None  # reference transcript (labelled samples)


def _looped_clip(source: Path, seconds: float, out: Path) -> Path:
    """`source` trimmed or looped to exactly `seconds` (video frames and audio together)."""
    if out.exists():
        return out
    info = media.probe(source)
    frames = list(media.iter_video(source, start=info.start))
    audio = media.read_audio(source, info.start)
    n = int(round(seconds * features.VIDEO_FPS))
    per_frame = features.SAMPLES_PER_VIDEO_FRAME
    audio = features.align_audio_to_video(audio, len(frames))
    picks = [i % len(frames) for i in range(n)]
    looped = np.concatenate([audio[i * per_frame:(i + 1) * per_frame] for i in picks])
    out.parent.mkdir(parents=True, exist_ok=True)
    return media.write_video(out, (frames[i] for i in picks), audio=looped)


def build_inputs(opts: BenchOptions, samples: list[dict], labelled: bool) -> list[Input]:
    """Timed inputs (the first sample looped or trimmed to each length) and, when transcripts mean
    something (`labelled`), the samples themselves."""
    import hashlib

    tag = hashlib.sha256(opts.samples.read_bytes() + b"".join(  # the manifest and its clips' contents
        sha256_file(opts.samples.parent / row["path"]).encode() for row in samples)).hexdigest()[:10]
    folder = opts.work / "inputs" / tag
    first = opts.samples.parent / samples[0]["path"]
    inputs = [Input(f"{s:g}s", _looped_clip(first, s, folder / f"clip-{s:g}s.mp4"), folder / f"clip-{s:g}s.npz", s)
              for s in opts.seconds]
    if labelled:
        inputs += [Input(f"sample-{i}", opts.samples.parent / row["path"], folder / f"{Path(row['path']).stem}.npz",
                         float(row.get("seconds", 0.0)), row["text"]) for i, row in enumerate(samples, 1)]
    return inputs


# ---- running ------------------------------------------------------------------------------------------
def run_worker(spec: dict[str, Any], work: Path, label: str) -> dict[str, Any]:
    """One worker process; its stderr is shown only when it fails."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = work / f"{label}.spec.json", work / f"{label}.result.json"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "smop_edge.apps.bench_worker", str(spec_path), str(result_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not result_path.exists():
        raise UsageError(f"benchmark worker {label} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(result_path.read_text())


def model_spec(c: BenchConfig, bundle: Path | None, opts: BenchOptions, src: Source, inputs: list[Input], task: str,
               first_round: bool) -> dict[str, Any]:
    items = [{"name": i.name, "npz": str(i.npz), "task": task, "timed": i.text is None}
             for i in inputs if i.text is None or (first_round and not c.fixed_steps)]
    spec = {"engine": c.engine, "threads": opts.threads, "repeats": opts.repeats, "beams": c.beams,
            "exact": c.exact, "precision": c.precision, "fixed_steps": c.fixed_steps, "inputs": items,
            "max_new_tokens": opts.decode_steps if c.fixed_steps else opts.max_new_tokens}
    if c.engine == "torch":
        spec.update(checkpoint=str(src.checkpoint), tokenizer=str(src.tokenizer), audio_mode=c.audio_mode)
    elif c.needs_bundle:
        spec["bundle"] = str(bundle)
    return spec


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return {"median": round(float(np.median(v)), 3), "p90": round(float(np.percentile(v, 90)), 3)} if len(v) else {}


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 1e6, 2)


def decoder_weight_bytes(bundle: Bundle) -> int:
    """Bytes of the decoder graph files (weights dominate them): what each decode step reads."""
    return sum(p.stat().st_size for p in bundle.stage_files("decoder"))


def run_bench(opts: BenchOptions, log: Log) -> dict[str, Any]:
    """Everything: limits, exports, inputs, rounds of workers, then the report dict."""
    from smop_edge.recipe.corpus import read_manifest

    src = zoo_source(opts, log) if opts.zoo else bundle_source(opts)
    if not opts.samples and src.bundle:
        opts.samples = src.bundle.path.parent / "samples" / "manifest.jsonl"
    if not opts.samples or not opts.samples.is_file():
        raise UsageError(f"no sample clips at {opts.samples}: pass --samples MANIFEST")
    samples = read_manifest(opts.samples)
    tasks = src.config["tasks"]
    task = opts.task or ("avsr" if "avsr" in tasks else tasks[0])
    if task not in tasks:
        raise UsageError(f"the model does not do {task} (it does {', '.join(tasks)})")
    fmt = src.bundle.manifest.format if src.bundle else "onnx"
    configs = [c for c in plan_configs(src.audio_mode, opts.backends, src.random_init, opts.layouts, fmt)
               if c.engine != PEER_ENGINE or task != "vsr"]  # the peer reads audio
    if opts.only:
        unknown = set(opts.only) - {c.name for c in configs}
        if unknown:
            raise UsageError(f"unknown configuration(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(c.name for c in configs)}")
        configs = [c for c in configs if c.name in opts.only or c.name in ("default", "torch-fp32")]
    board = {"before": board_info().to_dict()}  # a hot or throttled board's timings are not comparable
    log(f"machine limits ({opts.threads} threads)")
    limits = machine_limits.measure(opts.threads)
    export_errors: dict[str, str] = {}
    bundles = bundles_for(configs, src, opts, log, export_errors)
    # configuration -> why it has no figures
    failed = {c.name: export_errors[c.bundle_key()] for c in configs
              if c.needs_bundle and c.bundle_key() in export_errors}
    failed.update({c.name: NO_CHECKPOINT for c in configs if c.engine == "torch" and src.checkpoint is None})
    inputs = build_inputs(opts, samples, labelled=not src.random_init)
    raw: dict[str, list[dict]] = {c.name: [] for c in configs}
    media_runs: list[dict] = []
    runs_dir = opts.work / "runs"
    for r in range(opts.rounds):
        spec = {"engine": "media", "repeats": 1,
                "inputs": [{"name": i.name, "media": str(i.media), "npz": str(i.npz)} for i in inputs
                           if i.text is None or r == 0]}
        t0 = time.perf_counter()
        media_runs.append(run_worker(spec, runs_dir, f"media-{r}"))
        log(f"round {r + 1}/{opts.rounds}: media decode + lip crop ({time.perf_counter() - t0:.1f} s)")
        order = configs[r % len(configs):] + configs[: r % len(configs)]
        for c in order:
            if c.name in failed:
                continue
            t0 = time.perf_counter()
            spec = model_spec(c, bundles.get(c.bundle_key()), opts, src, inputs, task, r == 0)
            try:
                raw[c.name].append(run_worker(spec, runs_dir, f"{c.name}-{r}"))
            except UsageError as exc:
                failed[c.name] = str(exc)
                log(f"{c.name}: {exc}; skipped")
                continue
            log(f"round {r + 1}/{opts.rounds}: {c.name} ({time.perf_counter() - t0:.1f} s)")
    done = [c for c in configs if c.name not in failed]
    rep = report(done, raw, media_runs, inputs, bundles, limits, opts, src, task)
    rep["failed"] = failed
    rep["board"] = {**board, "after": board_info().to_dict()}
    return rep


# ---- the report ---------------------------------------------------------------------------------------
STAGES = ("features", "audio_encoder", "video_encoder", "projector", "prefix", "prefill")


def _config_report(c: BenchConfig, runs: list[dict], inputs: list[Input], media_ms: dict[str, dict],
                   reference: dict[str, list[int]] | None, reference_fixed: bool) -> dict[str, Any]:
    """Per input: stage medians/p90, totals, RTFs; peak RSS; sample WER; agreement with the torch
    reference's tokens (for configurations that decode the way it did)."""
    by_input: dict[str, Any] = {}
    for i in inputs:
        if i.text is not None:
            continue
        timings = [t for run in runs for t in run["inputs"][i.name]["timings"]]
        stages = {s: _stats([t[s] for t in timings if s in t]) for s in STAGES}
        total = _stats([t["total"] for t in timings])
        shared = media_ms[i.name]
        # the lip crop decodes the video itself: media = the audio's decoding + the crop (video decoded once);
        # the peer reads the audio alone
        with_media = total["median"] + shared["audio_decode"]["median"] + \
            (shared["lip_crop"]["median"] if c.engine != PEER_ENGINE else 0.0)
        by_input[i.name] = {
            "seconds": i.seconds, "stages": {k: v for k, v in stages.items() if v},
            "decode_token": _stats([x for t in timings for x in t["decode_token"]]),
            "tokens": len(runs[0]["inputs"][i.name]["tokens"]), "total": total,
            "rtf": round(total["median"] / 1000 / i.seconds, 4),
            "rtf_with_media": round(with_media / 1000 / i.seconds, 4)}
    first = runs[0]["inputs"]
    out: dict[str, Any] = {"config": asdict(c), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                           "load_ms": _stats([r["load_ms"] for r in runs]),
                           "torch_imported": any(r["torch_imported"] for r in runs), "inputs": by_input}
    labelled = [i for i in inputs if i.text is not None and i.name in first]
    if labelled:
        wer, errors, words = corpus_wer((i.text, first[i.name]["text"]) for i in labelled)
        out["samples"] = {"wer": round(wer, 4), "errors": errors, "words": words,
                          "texts": {i.name: first[i.name]["text"] for i in labelled}}
    if reference and c.fixed_steps == reference_fixed and c.engine != PEER_ENGINE:
        names = [n for n in first if n in reference]
        agree = [_agreement(reference[n], first[n]["tokens"]) for n in names]
        out["agreement"] = {"transcripts_equal": sum(a == 1.0 for a in agree), "inputs": len(names),
                            "token_agreement": round(float(np.mean(agree)), 4)}
    return out


def _agreement(want: list[int], got: list[int]) -> float:
    n = max(len(want), len(got), 1)
    return sum(x == y for x, y in zip(want, got)) / n


def report(configs: list[BenchConfig], raw: dict[str, list[dict]], media_runs: list[dict], inputs: list[Input],
           bundles: dict[str, Path], limits: machine_limits.MachineLimits, opts: BenchOptions, src: Source,
           task: str) -> dict[str, Any]:
    media_ms = {i.name: {s: _stats([t[s] for run in media_runs for t in run["inputs"][i.name]["timings"]])
                         for s in ("audio_decode", "video_decode", "lip_crop")}
                for i in inputs if i.text is None}
    torch_runs = raw.get("torch-fp32")
    reference = {n: v["tokens"] for n, v in torch_runs[0]["inputs"].items()} if torch_runs else None
    results = {}
    for c in configs:
        results[c.name] = _config_report(c, raw[c.name], inputs, media_ms, reference, src.random_init)
        if c.needs_bundle:
            results[c.name]["bundle"] = str(bundles[c.bundle_key()])
            results[c.name]["bundle_mb"] = folder_mb(bundles[c.bundle_key()])
    longest = max((i for i in inputs if i.text is None), key=lambda i: i.seconds)
    out = {"model": src.config["name"], "random_weights": src.random_init,
           "source": str(src.bundle.path) if src.bundle else f"zoo {src.config['name']}", "task": task,
           "threads": opts.threads, "repeats": opts.repeats, "rounds": opts.rounds, "machine": limits.to_dict(),
           "bandwidth_gbps": limits.bandwidth_gbps, "peak_gflops_fp32": limits.peak_gflops_fp32,
           "peak_gops_int8": limits.peak_gops_int8, "media": media_ms, "configs": results, "ratios_at": longest.name}
    out.update(_ratios(results, longest, limits, src, task))
    return out


def _total(results: dict[str, Any], name: str, at: str) -> float | None:
    return results[name]["inputs"][at]["total"]["median"] if name in results else None


def _pooled_projector_ratios(results: dict[str, Any], smop: str, at: str) -> dict[str, Any]:
    """SMoP (and each layout) against the MLP projector with a low-noise estimator: the configurations differ
    in the projector only, so everything else (encoders, prefill, decode: the same graphs) is pooled into
    one median over all of them, and each ratio is (shared + its projector) / (shared + MLP's projector).
    `noise`: the projectors' p90 - median over the shared time, the ratios' own uncertainty; `shared_spread`:
    how far the per-configuration shared times lie apart, the noise of comparing totals."""
    names = [smop, "mlp-fixed"] + [n for n, r in results.items() if r["config"]["model"] not in ("smop", "mlp")]
    rows = {n: results[n]["inputs"][at] for n in names}
    proj = {n: r["stages"]["projector"] for n, r in rows.items()}
    shared = {n: r["total"]["median"] - proj[n]["median"] for n, r in rows.items()}
    pooled = float(np.median(list(shared.values())))
    label = {smop: "smop", "mlp-fixed": "mlp"} | {n: results[n]["config"]["model"] for n in names[2:]}
    mlp = proj["mlp-fixed"]["median"]
    return {"shared_ms": round(pooled, 2), "projector_ms": {label[n]: p["median"] for n, p in proj.items()},
            "over_mlp": {label[n]: round((pooled + p["median"]) / (pooled + mlp), 4)
                         for n, p in proj.items() if n != "mlp-fixed"},
            "noise": round(max(p["p90"] - p["median"] for p in proj.values()) / pooled, 4),
            "shared_spread": round((max(shared.values()) - min(shared.values())) / pooled, 4)}


def _ratios(results: dict[str, Any], longest: Input, limits: machine_limits.MachineLimits, src: Source,
            task: str) -> dict[str, Any]:
    """The issue's ratios at the longest input, each with whether its target is met."""
    from smop_edge.models import flops
    from smop_edge.runtime.config import ModelConfig

    at, out, targets = longest.name, {}, {}
    torch_ms = _total(results, "torch-fp32", at)
    if torch_ms:
        for key, name in (("same_precision_ratio", "fp32"), ("speedup_vs_torch", "default")):
            if name in results:
                out[key] = round(torch_ms / _total(results, name, at), 3)
        if "speedup_vs_torch" in out and "samples" in results["default"]:
            change = 100 * (results["default"]["samples"]["wer"] - results["torch-fp32"]["samples"]["wer"])
            out["wer_change_pp"] = round(change, 2)
            targets["deployment_3x_wer_0.5pp"] = out["speedup_vs_torch"] >= 3 and change <= 0.5
    if "peer-whisper" in results and "default" in results:
        out["over_peer"] = round(_total(results, "default", at) / _total(results, "peer-whisper", at), 3)
        targets["no_slower_than_peer"] = out["over_peer"] <= 1.0
    smop = "default" if src.random_init else "smop-fixed"  # with random weights every config is fixed-step
    if smop in results and "mlp-fixed" in results:
        mlp_ms = _total(results, "mlp-fixed", at)
        out["smop_over_mlp"] = round(_total(results, smop, at) / mlp_ms, 4)
        layouts = {r["config"]["model"]: round(r["inputs"][at]["total"]["median"] / mlp_ms, 4)
                   for r in results.values() if r["config"]["model"] not in ("smop", "mlp")}
        if layouts:
            out["layouts_over_mlp"] = layouts
        out["projector_pooled"] = _pooled_projector_ratios(results, smop, at)
        pooled = out["projector_pooled"]
        worst = max(pooled["over_mlp"].values()) if pooled["noise"] < 0.05 else \
            max([out["smop_over_mlp"], *layouts.values()])
        targets["smop_within_5pct_of_mlp"] = worst <= 1.05
    if "default" in results:
        default = results["default"]["inputs"][at]
        bundle = load_bundle(Path(results["default"]["bundle"]), verify=False)
        weight_bytes = decoder_weight_bytes(bundle)
        bound_ms = weight_bytes / (limits.bandwidth_gbps * 1e9) * 1000
        out["decode"] = {"token_ms": default["decode_token"]["median"], "weight_bytes": weight_bytes,
                         "bandwidth_bound_ms": round(bound_ms, 4),
                         "ratio_to_bound": round(default["decode_token"]["median"] / bound_ms, 2)}
        targets["decode_within_1.5x_of_bandwidth"] = out["decode"]["ratio_to_bound"] <= 1.5
        cfg = ModelConfig.from_dict(src.config)
        npz = np.load(longest.npz)
        encoders = {}
        if cfg.audio_encoder and "audio_encoder" in default["stages"] and task != "vsr":
            audio = features.align_audio_to_video(npz["audio"], len(npz["frames"])) if task == "avsr" else npz["audio"]
            mel, _ = features.audio_encoder_input(audio, cfg.audio_encoder.mel_bins,
                                                  bundle.manifest.audio_mode == "faithful")
            encoders["audio_encoder"] = flops.audio_encoder(cfg.audio_encoder, mel.shape[1])
        if cfg.video_encoder and "video_encoder" in default["stages"]:
            encoders["video_encoder"] = flops.video_encoder(cfg.video_encoder, len(npz["frames"]))
        out["encoders"] = {}
        for stage, f in encoders.items() if limits.peak_gflops_fp32 else ():
            bound = f / (limits.peak_gflops_fp32 * 1e9) * 1000
            ms = default["stages"][stage]["median"]
            out["encoders"][stage] = {"gflop": round(f / 1e9, 3), "ms": ms, "peak_bound_ms": round(bound, 3),
                                      "ratio_to_bound": round(ms / bound, 2),
                                      "achieved_gflops": round(f / 1e9 / (ms / 1000), 1)}
    out["targets"] = targets
    return out


# ---- rendering ----------------------------------------------------------------------------------------
def _quality_cells(r: dict[str, Any], missing: str, unit: str = "") -> tuple[str, str]:
    """One configuration's agreement (equal transcripts / inputs; `ref` for the torch reference, which the
    others are compared with) and sample-WER cells."""
    agree = r.get("agreement")
    agree_s = "ref" if r["config"]["engine"] == "torch" else \
        f"{agree['transcripts_equal']}/{agree['inputs']}" if agree else missing
    wer_s = f"{100 * r['samples']['wer']:.1f}{unit}" if "samples" in r else missing
    return agree_s, wer_s


def render_text(rep: dict[str, Any]) -> str:
    """The tables a person reads: per configuration and input length, then the ratios and targets."""
    m = rep["machine"]
    peaks = (f"peak matmul {m['peak_gflops_fp32']} GFLOP/s fp32, {m['peak_gops_int8']} GOP/s int8"
             if m["peak_gflops_fp32"] else "peak matmul not measured (needs onnx, the [export] extra)")
    lines = [f"machine: {m['threads']} threads, memory bandwidth {m['bandwidth_gbps']} GB/s, {peaks}",
             f"{rep['model']}{' (random weights)' if rep['random_weights'] else ''}, task {rep['task']}; "
             f"median ms over {rep['rounds']} rounds x {rep['repeats']} runs (p90 in --json); "
             "every configuration in its own process", ""]
    head = (f"{'config':<16}{'input':>6}{'total':>9}{'RTF':>8}{'RTF+media':>10}{'feat':>7}{'a-enc':>8}"
            f"{'v-enc':>8}{'proj':>7}{'prefill':>8}{'ms/tok':>7}{'tok':>4}{'RSS MB':>8}{'MB':>7}"
            f"{'agree':>7}{'WER%':>6}")
    lines.append(head)
    for name, r in rep["configs"].items():
        agree_s, wer_s = _quality_cells(r, "-")
        for label, x in r["inputs"].items():
            st = x["stages"]

            def ms(stage: str) -> str:
                return f"{st[stage]['median']:.1f}" if stage in st else "-"

            lines.append(f"{name:<16}{label:>6}{x['total']['median']:>9.1f}{x['rtf']:>8.3f}{x['rtf_with_media']:>10.3f}"
                         f"{ms('features'):>7}{ms('audio_encoder'):>8}{ms('video_encoder'):>8}{ms('projector'):>7}"
                         f"{ms('prefill'):>8}{x['decode_token'].get('median', 0):>7.2f}{x['tokens']:>4}"
                         f"{r['peak_rss_mb']:>8.0f}{r.get('bundle_mb', 0):>7.1f}{agree_s:>7}{wer_s:>6}")
    lines.append("")
    for label, x in rep["media"].items():
        lines.append(f"media {label}: audio decode {x['audio_decode']['median']:.1f} ms, video decode "
                     f"{x['video_decode']['median']:.1f} ms, lip crop (its own video decoding included) "
                     f"{x['lip_crop']['median']:.1f} ms; RTF+media counts the video decoding once")
    at = rep["ratios_at"]
    if "speedup_vs_torch" in rep:
        lines.append(f"deployment ratio (torch fp32 / default, {at}, without media): {rep['speedup_vs_torch']:.2f}x"
                     + (f", sample WER change {rep['wer_change_pp']:+.2f} pp" if "wer_change_pp" in rep else ""))
    if "over_peer" in rep:
        lines.append(f"default / the peer (Whisper tiny.en, audio only), {at}, without media: {rep['over_peer']:.2f}x")
    if "same_precision_ratio" in rep:
        lines.append(f"same-precision ratio (torch fp32 / the default's engine in fp32, {at}): "
                     f"{rep['same_precision_ratio']:.2f}x")
    if "smop_over_mlp" in rep:
        lines.append(f"SMoP / MLP projector end to end ({at}, fixed decode steps): {rep['smop_over_mlp']:.3f}"
                     + "".join(f", {k.upper()} {v:.3f}" for k, v in rep.get("layouts_over_mlp", {}).items()))
        pooled = rep["projector_pooled"]
        lines.append(f"  pooled (shared stages {pooled['shared_ms']:.1f} ms, one median over these configurations, "
                     f"+ each projector): " + ", ".join(f"{k.upper()} {v:.4f}" for k, v in pooled["over_mlp"].items())
                     + f"; noise {100 * pooled['noise']:.2f} % (totals: {100 * pooled['shared_spread']:.2f} %)")
    if "decode" in rep:
        d = rep["decode"]
        lines.append(f"decode: {d['token_ms']:.3f} ms/token vs {d['bandwidth_bound_ms']:.4f} ms to read "
                     f"{d['weight_bytes'] / 1e6:.2f} MB of weights at the measured bandwidth ({d['ratio_to_bound']:.1f}x)")
    for stage, e in rep.get("encoders", {}).items():
        lines.append(f"{stage}: {e['gflop']} GFLOP in {e['ms']:.1f} ms = {e['achieved_gflops']} GFLOP/s "
                     f"({e['ratio_to_bound']:.1f}x the fp32 peak bound)")
    for name, why in rep.get("failed", {}).items():
        lines.append(f"{name}: no figures ({why})")
    for target, met in rep["targets"].items():
        lines.append(f"target {target}: {'met' if met else 'NOT met'}")
    if "board" in rep:
        for when in ("before", "after"):
            board = BoardInfo(**rep["board"][when])
            lines.append(f"board {when}: {board.describe()}")
            lines += [f"  warning: {w}" for w in board.warnings()]
    return "\n".join(lines)


def render_markdown(rep: dict[str, Any]) -> str:
    """The README's table: every configuration at the longest input, medians in ms."""
    at = rep["ratios_at"]
    lines = ["| config | differs by | total | RTF with media | audio enc | video enc | projector | prefill | ms/token "
             "| peak RSS MB | bundle MB | agree | WER |", "|" + "---|" * 13]
    for name, r in rep["configs"].items():
        x = r["inputs"][at]
        st = {k: f"{v['median']:.0f}" for k, v in x["stages"].items()}
        agree_s, wer_s = _quality_cells(r, "–", " %")
        lines.append(f"| {name} | {r['config']['factor']} | {x['total']['median']:.0f} | {x['rtf_with_media']:.3f} | "
                     f"{st.get('audio_encoder', '–')} | {st.get('video_encoder', '–')} | {st.get('projector', '–')} | "
                     f"{st.get('prefill', '–')} | {x['decode_token'].get('median', 0):.2f} | {r['peak_rss_mb']:.0f} | "
                     f"{r.get('bundle_mb', 0):.1f} | {agree_s} | {wer_s} |")
    return "\n".join(lines)


def plot(rep: dict[str, Any], path: str | Path) -> Path:
    """Stacked per-stage medians of every configuration at the longest input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = rep["ratios_at"]
    names = list(rep["configs"])
    parts = list(STAGES) + ["decode", "whole call"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    bottom = np.zeros(len(names))
    for part in parts:
        values = []
        for n in names:
            x = rep["configs"][n]["inputs"][at]
            if part == "decode":
                values.append(x["decode_token"].get("median", 0.0) * max(x["tokens"] - 1, 0))
            elif part == "whole call":  # the peer's call has no stage split
                values.append(0.0 if x["stages"] else x["total"]["median"])
            else:
                values.append(x["stages"].get(part, {}).get("median", 0.0))
        ax.bar(names, values, bottom=bottom, label=part)
        bottom += np.asarray(values)
    ax.set_ylabel(f"ms ({at} input)")
    weights = ", random weights" if rep["random_weights"] else ""
    ax.set_title(f"smop-edge bench: {rep['model']}{weights}, {rep['task']}, {rep['threads']} threads")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
