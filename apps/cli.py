"""The `smop-edge` command line. Subcommands import their heavy parts lazily, so that commands on
the runtime path never import torch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from smop_edge.runtime import DEMO_BUNDLE
from smop_edge.runtime.errors import SmopEdgeError, UsageError


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from smop_edge.models.checkpoint import load_overrides

    flags = {
        "audio_compression.rate": args.audio_rate,
        "video_compression.rate": args.video_rate,
        "projector.top_k": args.top_k,
        "tasks": args.tasks.split(",") if args.tasks else None,
        "video_encoder.layer_norm_first": False if args.video_post_ln else None,
    }
    return load_overrides(args.config, flags)


def _add_override_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("values a checkpoint's shapes cannot tell (override zoo/defaults)")
    g.add_argument("--config", metavar="JSON", help="sidecar with any config fields, e.g. {\"llm\": {\"heads\": 16}}")
    g.add_argument("--audio-rate", type=int, help="audio avg-pool rate (default: zoo, else 4)")
    g.add_argument("--video-rate", type=int, help="video avg-pool rate (default: zoo, else 2)")
    g.add_argument("--top-k", type=int, help="experts per token for SMoP (default: zoo, else 2)")
    g.add_argument("--tasks", help="comma-separated tasks the model supports (asr,vsr,avsr)")
    g.add_argument("--video-post-ln", action="store_true", help="AV-HuBERT is post-LN (Base-style)")


# ---- inspect ----------------------------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from smop_edge.models.checkpoint import analyze
    from smop_edge.models.inspection import summarize, render_text

    loaded = analyze(args.checkpoint, _overrides(args))
    summary = summarize(loaded, args.tokenizer)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render_text(summary))
    if not loaded.report.ok:
        print(f"smop-edge: error: checkpoint keys do not fit the model: {loaded.report.describe()}",
              file=sys.stderr)
        return 3
    return 0


# ---- init -------------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from smop_edge.models import zoo
    from smop_edge.models.checkpoint import random_init, save_checkpoint
    from smop_edge.models.tokenizer_builder import base_tokenizer_for
    import torch

    config = zoo.get(args.zoo)
    for out in (args.out, args.tokenizer_out):
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    if args.tokenizer_out:
        base_tokenizer_for(config, args.vocab).save(args.tokenizer_out)
    model = random_init(config, args.seed)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    save_checkpoint(model, args.out, lightning=args.out.endswith(".ckpt"), dtype=dtype)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {config.name}, {n:,} parameters ({args.dtype}), random weights")
    if args.tokenizer_out:
        print(f"wrote {args.tokenizer_out}: base tokenizer, {config.llm.vocab - 5} tokens")
    return 0


# ---- export / verify ---------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from smop_edge.export.bundle import ExportOptions, export_bundle
    from smop_edge.runtime.tokenizer import load_tokenizer

    options = ExportOptions(format=args.format, experts=args.experts, llm=args.llm, encoders=args.encoders,
                            audio_mode=args.audio_mode, static=args.static, force=args.force)
    for name in ("audio_buckets", "video_buckets"):
        if getattr(args, name):
            setattr(options, name, _int_list(getattr(args, name), "--" + name.replace("_", "-")))
    if args.kv_capacity:
        options.kv_capacity = args.kv_capacity
    options.validate()
    if not args.tokenizer:
        raise UsageError("--tokenizer is required: the base LLM's tokenizer.json")
    if args.random_init:
        from smop_edge.models import zoo
        from smop_edge.models.checkpoint import random_init

        config = zoo.get(args.checkpoint)
        tokenizer = load_tokenizer(args.tokenizer)
        config.llm.vocab = tokenizer.vocab_size
        model = random_init(config, args.seed)
        source = {"zoo": args.checkpoint, "random_init": True, "seed": args.seed}
    else:
        from smop_edge.models.checkpoint import load_model

        model, loaded = load_model(args.checkpoint, _overrides(args), dtype=None)  # stays memory-mapped
        tokenizer = load_tokenizer(args.tokenizer, expected_size=model.cfg.llm.vocab)
        source = {"checkpoint": Path(args.checkpoint).name, "size_bytes": loaded.file.size_bytes,
                  "zoo_match": loaded.inferred.zoo_match}
    manifest = export_bundle(model, tokenizer, Path(args.out), options, source)
    if args.json:
        data = manifest.to_dict()
        print(json.dumps({"bundle": args.out, **{k: data[k] for k in ("stages", "parity", "quantization")}}, indent=2))
    return 0


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers, got {text!r}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    from smop_edge.runtime.errors import BundleError
    from smop_edge.runtime.verify import self_test

    result = self_test(args.bundle, args.backend)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.describe())
    if not result.passed:
        raise BundleError(f"{args.bundle}: self-test transcript differs from the torch reference's")
    return 0


# ---- transcribe --------------------------------------------------------------------------------------
def _open_bundle(args: argparse.Namespace):
    """The Recognizer of `--bundle` (default: the demo bundle) on the chosen backend."""
    from smop_edge.runtime import load_recognizer

    return load_recognizer(args.bundle, backend=args.backend, device=args.device, threads=args.threads,
                           precision=args.precision)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from smop_edge.runtime.transcribe import progress_bar, transcribe_media

    from .formats import render

    if args.backend == "torch":
        if not (args.checkpoint and args.tokenizer):
            raise UsageError("--backend torch needs --checkpoint CKPT and --tokenizer tokenizer.json")
        from smop_edge.models.reference import ReferenceRecognizer  # the only torch import on this path

        rec = ReferenceRecognizer.from_checkpoint(args.checkpoint, args.tokenizer, audio_mode=args.audio_mode)
    else:
        rec = _open_bundle(args)
    options = _decoding_options(args)
    task = None if args.task == "auto" else args.task
    results = []
    for path in args.media:
        result = transcribe_media(rec, path, task, args.roi, options, progress_bar(not args.quiet))
        for warning in result.warnings:
            print(f"smop-edge: warning: {path}: {warning}", file=sys.stderr)
        results.append(result)
        if not args.json:
            if len(args.media) > 1 and args.format == "txt":
                print(f"{path}: {render(result, 'txt')}")
            else:
                print(render(result, args.format))
    if args.json:
        data = [r.to_dict() for r in results]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    return 0


# ---- crop -------------------------------------------------------------------------------------------
def cmd_crop(args: argparse.Namespace) -> int:
    from smop_edge.runtime import media
    from smop_edge.runtime.errors import UnsuitableInputError
    from smop_edge.runtime.lip_cropper import crop_mouths_with_transforms, draw_crop_box

    info = media.probe(args.media)
    if not info.has_video:
        raise UnsuitableInputError(f"{args.media} has no video track")
    audio = media.read_audio(args.media, info.start) if info.has_audio else None
    crops, found, transforms = crop_mouths_with_transforms(lambda: media.iter_video(args.media, start=info.start),
                                                           audio)
    if not found:
        raise UnsuitableInputError(f"{args.media}: no face found")
    media.write_video(args.out, crops, audio=audio)
    if args.overlay:
        frames = media.iter_video(args.media, start=info.start)
        media.write_video(args.overlay, (draw_crop_box(f, m) for f, m in zip(frames, transforms)), audio=audio)
    print(f"{args.out}: {len(crops)} mouth crops (96x96, 25 fps); face found in {found}/{len(crops)} frames")
    return 0


# ---- synth ------------------------------------------------------------------------------------------
def cmd_synth(args: argparse.Namespace) -> int:
    from smop_edge.recipe.corpus import synth_corpus
    from smop_edge.runtime.transcribe import progress_bar

    show = progress_bar(not args.quiet, piped_lines=True)
    manifest = synth_corpus(args.out, args.n, args.seed, args.split, args.workers,
                            progress=(lambda done, total: show("synth", done, total)) if show else None)
    print(f"{manifest}: {args.n} {args.split} utterances")
    return 0


# ---- train ------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from smop_edge.recipe.training import TrainOptions, set_threads, train
    from smop_edge.runtime.transcribe import progress_bar

    set_threads(args.threads)
    given = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "seed", "asr_first")}
    if args.task_mix:
        given["task_mix"] = _task_mix(args.task_mix)
    opts = TrainOptions(model=args.model, snapshots=tuple(args.snapshot_at or ()),
                        **{k: v for k, v in given.items() if v is not None})
    if args.init:
        opts = opts.fine_tuning(args.init)
    show = progress_bar(not args.quiet, piped_lines=True)
    if args.word_bank:
        from smop_edge.recipe import word_bank

        word_bank.build(args.word_bank, workers=args.workers,
                        progress=(lambda d, t: show("word bank", d, t)) if show else None)
    final = train(args.manifest, args.out, opts, args.dev, args.crop_cache, args.workers, args.word_bank,
                  show, log=lambda line: print(line, flush=True))
    print(f"{final}: trained {opts.model} ({opts.steps} steps); tokenizer {Path(args.out) / 'tokenizer.json'}")
    return 0


def _task_mix(pairs: list[str]) -> dict[str, float]:
    """`--task-mix avsr=2 asr=1 vsr=1` as {task: share} (TrainOptions checks the tasks and shares)."""
    mix = {}
    for pair in pairs:
        task, _, share = pair.partition("=")
        try:
            mix[task] = float(share)
        except ValueError:
            raise UsageError(f"--task-mix takes TASK=SHARE pairs such as avsr=0.5, got {pair!r}") from None
    return mix


# ---- eval -------------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from smop_edge.runtime.transcribe import progress_bar

    from .evaluate import MIN_SPEAKER_WORDS, evaluate

    rec = _open_bundle(args)
    snrs = [None if s.lower() == "clean" else _float(s, "--snr") for s in (args.snr or ["clean"])]
    task = args.task or ("avsr" if "avsr" in rec.tasks else rec.tasks[0])
    report = evaluate(rec, args.manifest, task, snrs, args.noise, args.seed, args.crop_cache, args.limit,
                      progress_bar(not args.quiet), str(args.bundle or DEMO_BUNDLE), _decoding_options(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    for cond in report.conditions:
        label = "clean" if cond.snr is None else f"{cond.snr:g} dB {args.noise}"
        missed = sum(r.no_face for r in cond.rows)
        print(f"{task} {label}: WER {100 * cond.wer:.2f} % ({cond.errors} errors / {cond.words} words: "
              f"{_error_kinds(vars(cond))}; {len(cond.rows)} utterances"
              + (f", {missed} without a face found" if missed else "") + ")")
        if len(cond.voices) > 1:
            for voice, v in cond.voices.items():
                print(_tally_line(voice, v))
        for speaker, v in cond.speakers.items():  # speakers heard in several voices
            if speaker not in cond.voices:
                print(_tally_line(f"speaker {speaker}", v))
        if len(cond.speakers) > 1 and cond.speaker_wer is not None:
            print(f"  per speaker: WER {100 * cond.speaker_wer:.1f} % (the mean of the {len(cond.speakers_in_mean)} "
                  f"speakers with {MIN_SPEAKER_WORDS} words or more, each weighing the same)")
    return 0


def _tally_line(label: str, tally: dict) -> str:
    """An indented 'label: WER x % (errors / words: kinds)' line under a condition's total."""
    return f"  {label}: WER {100 * tally['wer']:.1f} % ({tally['errors']} / {tally['words']}: {_error_kinds(tally)})"


def _error_kinds(tally: dict) -> str:
    """'S sub, D del, I ins' of an eval tally."""
    return f"{tally['substitutions']} sub, {tally['deletions']} del, {tally['insertions']} ins"


# ---- bench ------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchOptions, plot, render_markdown, render_text, run_bench

    seconds = [_float(s, "--seconds") for s in args.seconds.split(",")]
    if any(s <= 0 for s in seconds):
        raise UsageError("--seconds takes positive lengths, e.g. 2,5,10")
    backends = args.backends.split(",")
    unknown = set(backends) - {"torch", "onnxruntime", "openvino"}
    if unknown:
        raise UsageError(f"unknown backend(s) {', '.join(sorted(unknown))} (torch, onnxruntime, openvino)")
    if args.repeats < 1 or args.rounds < 1:
        raise UsageError("--repeats and --rounds must be at least 1")
    if args.zoo and not args.random_init:
        raise UsageError("--zoo benchmarks random weights: add --random-init (a trained model comes as --bundle)")
    if args.zoo and args.bundle:
        raise UsageError("--bundle and --zoo exclude each other")
    if args.audio_mode and not args.zoo:
        raise UsageError("--audio-mode is for --zoo; a bundle's audio mode is its own")
    layouts = tuple(x.upper() for x in args.layouts.split(",")) if args.layouts else ()
    if set(layouts) - {"JEJR", "JEDR", "DEDR"}:
        raise UsageError(f"--layouts takes JEJR, JEDR, DEDR, not {args.layouts!r}")
    opts = BenchOptions(bundle=None if args.zoo else Path(args.bundle or DEMO_BUNDLE), zoo=args.zoo,
                        audio_mode=args.audio_mode, layouts=layouts, seconds=seconds, backends=backends,
                        threads=args.threads or os.cpu_count() or 1, repeats=args.repeats, rounds=args.rounds,
                        decode_steps=args.decode_steps, task=args.task, work=Path(args.work),
                        only=args.configs.split(",") if args.configs else None)
    for name in ("checkpoint", "mlp_checkpoint", "samples"):
        if getattr(args, name):
            setattr(opts, name, Path(getattr(args, name)))
    if args.zoo and not opts.samples:  # random weights: the demo's first clip is just an input
        opts.samples = DEMO_BUNDLE.parent / "samples" / "manifest.jsonl"
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    rep = run_bench(opts, log)
    if args.plot:
        rep["plot"] = str(plot(rep, args.plot))
    print(json.dumps(rep, indent=2) if args.json else render_markdown(rep) if args.markdown else render_text(rep))
    return 0


def _float(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{flag} takes numbers (dB) or 'clean', not {text!r}") from None


# ---- main -------------------------------------------------------------------------------------------
def _add_backend_flags(p: argparse.ArgumentParser, backends: list[str]) -> None:
    p.add_argument("--bundle", help="bundle directory (default: the demo bundle)")
    p.add_argument("--backend", choices=backends, default="onnxruntime")
    p.add_argument("--device", default="CPU", help="OpenVINO device: CPU, NPU, GPU, AUTO")
    p.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32", help="OpenVINO inference precision")
    p.add_argument("--threads", type=int, help="CPU threads")


def _add_decoding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beams", type=int, default=1, help="beam width (1: greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search: finished hypotheses compare log-probability / length ** this")
    p.add_argument("--max-new-tokens", type=int, default=32)


def _decoding_options(args: argparse.Namespace):
    """The search `--beams`, `--length-penalty` and `--max-new-tokens` ask for (checked here: usage errors)."""
    from smop_edge.runtime.decoding import DecodingOptions

    if args.beams < 1 or args.max_new_tokens < 1:
        raise UsageError("--beams and --max-new-tokens must be at least 1")
    return DecodingOptions(beams=args.beams, max_new_tokens=args.max_new_tokens, length_penalty=args.length_penalty)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smop-edge", description="Llama-SMoP / Llama-AVSR on edge devices.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="show a checkpoint's inferred configuration, sizes and key report",
                       description="Infer a checkpoint's configuration from its shapes (zoo match, "
                                   "defaults, overrides) and check its keys strictly.")
    p.add_argument("checkpoint", help=".pth / Lightning .ckpt / .safetensors")
    p.add_argument("--tokenizer", metavar="JSON", help="the base LLM's tokenizer.json to check against the model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_override_flags(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("init", help="write a randomly initialised checkpoint of a zoo configuration",
                       description="Random weights with the official key names: for tests, demos and "
                                   "benchmarks at real scale. Not a trained model.")
    p.add_argument("zoo", help="zoo entry, e.g. tiny-jejr or smop-1b-jejr")
    p.add_argument("--out", required=True, help="output file (.pth, .ckpt for Lightning style, .safetensors)")
    p.add_argument("--tokenizer-out", metavar="JSON", help="also write a base tokenizer: a small trained one "
                   "that sizes the vocabulary (tiny configurations), or a word-level stand-in of the real "
                   "base tokenizer's size (real-size configurations; for benchmarks, not text)")
    p.add_argument("--vocab", type=int, default=320, help="target base vocabulary for --tokenizer-out")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("export", help="export a checkpoint to an ONNX or OpenVINO bundle",
                       description="One graph per stage, quantized experts, KV-cache decoder, parity "
                                   "measured against the torch reference and written into the manifest.")
    p.add_argument("checkpoint", help="checkpoint file, or a zoo name with --random-init")
    p.add_argument("--tokenizer", help="the base LLM's tokenizer.json (the AVSR tokens are added)")
    p.add_argument("--out", required=True, help="bundle directory to create")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx")
    p.add_argument("--experts", choices=["int8", "int4", "fp32"], default="int8",
                   help="expert / MLP projector weights (router and LayerNorms stay fp32)")
    p.add_argument("--llm", choices=["int8", "int4", "fp32"], default="int8", help="decoder weights")
    p.add_argument("--encoders", choices=["fp32", "int8"], default="fp32", help="encoder weights")
    p.add_argument("--audio-mode", choices=["faithful", "fast"], default="faithful",
                   help="faithful: 30 s padded audio, exact; fast: unpadded (accuracy cost measured)")
    p.add_argument("--static", action="store_true", help="static shapes everywhere (NPU variant)")
    p.add_argument("--video-buckets", metavar="N,N", help="--static: video lengths in frames (default 250,750)")
    p.add_argument("--audio-buckets", metavar="N,N",
                   help="--static with --audio-mode fast: mel-frame lengths (default 1000,3000)")
    p.add_argument("--kv-capacity", type=int, help="--static: decoder cache positions (default 1024)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    p.add_argument("--random-init", action="store_true", help="CHECKPOINT is a zoo name: random weights")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    p.add_argument("--json", action="store_true", help="print stages, quantization and parity as JSON")
    _add_override_flags(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="check a bundle's sha256 sums and rerun its self-test",
                       description="Exit 0 only when every file matches the manifest and the bundle "
                                   "reproduces the torch reference's transcript of its self-test input.")
    p.add_argument("bundle")
    p.add_argument("--backend", choices=["onnxruntime", "openvino"], help="default: the bundle's format")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("transcribe", help="transcribe audio / video files with a bundle",
                       description="Decode media, crop the mouth, and recognise speech with a bundle "
                                   "(default: the demo bundle). Exit codes: 0 done, 2 usage, 3 unreadable "
                                   "input, 4 invalid bundle, 5 input unsuitable for the model's tasks.")
    p.add_argument("media", nargs="+", help="video (mp4, mkv, avi, mov, webm) or audio (wav, flac, mp3, ogg)")
    p.add_argument("--task", choices=["auto", "asr", "vsr", "avsr"], default="auto")
    _add_backend_flags(p, ["onnxruntime", "openvino", "torch"])
    _add_decoding_flags(p)
    p.add_argument("--roi", action="store_true", help="the video is a pre-cropped mouth ROI (96x96)")
    p.add_argument("--format", choices=["txt", "srt", "vtt"], default="txt")
    p.add_argument("--json", action="store_true", help="text, task, timings, real-time factor, segments")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint", help="--backend torch: the checkpoint")
    p.add_argument("--tokenizer", help="--backend torch: the base LLM's tokenizer.json")
    p.add_argument("--audio-mode", choices=["faithful", "fast"], default="faithful", help="--backend torch only")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("crop", help="write the mouth crops of a video so a person can look at them",
                       description="Lip cropping as `transcribe` does it: 96x96 mouth crops at 25 fps, and "
                                   "optionally the video with the crop's outline drawn on every frame.")
    p.add_argument("media")
    p.add_argument("--out", required=True, help="crops video (mp4)")
    p.add_argument("--overlay", help="preview video with the crop outline (mp4)")
    p.set_defaults(func=cmd_crop)

    p = sub.add_parser("synth", help="generate the synthetic audio-visual corpus of the demo model",
                       description="Spoken alphanumeric strings from flite / festival / espeak-ng voices "
                                   "and talking faces, as mp4 files plus manifest.jsonl. Resumes: rows "
                                   "already in the manifest are kept. Clean audio: noise is added by "
                                   "training and eval.")
    p.add_argument("--out", required=True, help="corpus directory (manifest.jsonl, <split>/*.mp4)")
    p.add_argument("--n", type=int, required=True, help="number of utterances")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["train", "test"], default="train",
                   help="voices and faces of the two splits are disjoint")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train the demo model (or its MLP baseline) on a synthetic corpus",
                       description="Train a small Llama-SMoP from scratch on a `synth` corpus: one model for "
                                   "ASR, VSR and AVSR. Mouth crops are cached next to the manifest; the run "
                                   "saves its state every 100 steps and the same command resumes it.")
    p.add_argument("manifest", help="training manifest.jsonl")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pth, tokenizer.json, train_log.jsonl")
    p.add_argument("--model", choices=["demo-dedr", "demo-mlp"], default="demo-dedr")
    # unset options take TrainOptions' defaults (the recipe's: 14000 steps, 11000 of them ASR-only)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--asr-first", type=int, help="ASR-only steps before tasks are mixed")
    p.add_argument("--seed", type=int)
    p.add_argument("--task-mix", nargs="+", metavar="TASK=SHARE",
                   help="how often each task is drawn after the ASR-only steps (shares are normalised; "
                   "default avsr=0.5 asr=0.25 vsr=0.25)")
    p.add_argument("--snapshot-at", type=int, nargs="+", metavar="STEP",
                   help="also write checkpoint-STEP.pth at these steps (to export and judge a run mid-way)")
    p.add_argument("--init", metavar="CHECKPOINT", help="fine-tune a trained model (its tokenizer.json beside "
                   "it; e.g. models/demo/checkpoint.pth) instead of training from scratch: no length "
                   "curriculum, noise from the first step")
    p.add_argument("--dev", metavar="MANIFEST", help="held-out manifest: greedy WER every 500 steps")
    p.add_argument("--crop-cache", help="mouth-crop cache folder (default: crops/ next to the manifest)")
    p.add_argument("--word-bank", metavar="DIR", help="words of the training voices (built here if missing): "
                   "half the ASR batches are fresh utterances composed from it, with framewise word targets")
    p.add_argument("--workers", type=int, default=2, help="processes for cropping and the word bank")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="word error rate of a bundle on a manifest, clean and in noise",
                       description="Corpus-level WER (lowercase, whitespace words). Noise is mixed into the "
                                   "clean audio at each --snr (seeded); mouth crops are cached once.")
    p.add_argument("manifest", help="manifest.jsonl (rows with path relative to it and text)")
    p.add_argument("--task", choices=["asr", "vsr", "avsr"], help="default: avsr if the bundle has it")
    p.add_argument("--snr", nargs="+", metavar="DB", help="SNRs in dB, or 'clean' (default: clean)")
    p.add_argument("--noise", default="babble", help="babble, white, pink or an audio file")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--limit", type=int, help="first N rows only")
    p.add_argument("--crop-cache", help="mouth-crop cache folder (default: crops/ next to the manifest)")
    _add_backend_flags(p, ["onnxruntime", "openvino"])
    _add_decoding_flags(p)
    p.add_argument("--json", action="store_true", help="top-level wer (fraction), conditions, per-utterance rows")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="per-stage latency, real-time factor and memory against torch and the machine",
                       description="One factor at a time around the deployment default (ONNX Runtime, int8 "
                                   "experts, int8 LLM, greedy): torch reference, fp32, int4 LLM, inexact int8 "
                                   "kernels, OpenVINO, the other audio mode, beam search, SMoP vs MLP projector. "
                                   "Each configuration runs in its own process; bundle variants are exported "
                                   "once into --work. Inputs: the bundle's sample clips, looped to --seconds.")
    p.add_argument("--bundle", help="bundle directory (default: the demo bundle)")
    p.add_argument("--zoo", metavar="NAME", help="a zoo configuration instead, e.g. smop-1b-jejr (with --random-init)")
    p.add_argument("--random-init", action="store_true", help="--zoo: random weights, fixed decode steps")
    p.add_argument("--audio-mode", choices=["faithful", "fast"], help="--zoo: the default's audio mode (faithful)")
    p.add_argument("--layouts", metavar="L,L", help="also SMoP layouts (JEJR, JEDR, DEDR) vs the MLP baseline")
    p.add_argument("--checkpoint", help="the checkpoint the bundle came from (default: found next to the bundle)")
    p.add_argument("--mlp-checkpoint", help="MLP-projector baseline checkpoint (default: random weights)")
    p.add_argument("--samples", metavar="MANIFEST", help="labelled clips (default: samples/ next to the bundle)")
    p.add_argument("--seconds", default="2,5,10", help="input lengths in seconds (default 2,5,10)")
    p.add_argument("--backends", default="torch,onnxruntime,openvino", help="engines to include")
    p.add_argument("--configs", help="only these configurations (default and torch-fp32 are always run)")
    p.add_argument("--task", choices=["asr", "vsr", "avsr"], help="default: avsr if the model has it")
    p.add_argument("--threads", type=int, help="threads for every engine (default: all cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per input, per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds over all configurations (rotating order)")
    p.add_argument("--decode-steps", type=int, default=16, help="tokens decoded by the fixed-step pair")
    p.add_argument("--work", default="build/bench", help="exported variants, inputs and worker files (a cache, "
                   "kept per model and exporter version)")
    p.add_argument("--json", action="store_true", help="every figure, speedup_vs_torch and the machine limits")
    p.add_argument("--markdown", action="store_true", help="the README's table (longest input) instead of text")
    p.add_argument("--plot", metavar="PNG", help="stacked per-stage bar chart")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141
    except SmopEdgeError as exc:
        print(f"smop-edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("smop-edge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback for users; SMOP_EDGE_DEBUG=1 shows it
        if os.environ.get("SMOP_EDGE_DEBUG"):
            raise
        print(f"smop-edge: internal error: {type(exc).__name__}: {exc} (SMOP_EDGE_DEBUG=1 for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
