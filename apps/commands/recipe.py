"""`smop-edge synth` (the demo model's synthetic audio-visual corpus) and `smop-edge train` (the demo
model, or its MLP baseline, trained on it): the recipe in `smop_edge.recipe`, from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from smop_edge.runtime.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `synth` and `train`."""
    _add_synth(sub)
    _add_train(sub)


# ---- synth ------------------------------------------------------------------------------------------
def _add_synth(sub: argparse._SubParsersAction) -> None:
    """`synth`: corpus folder, size, seed, split and workers."""
    p = sub.add_parser("synth", help="generate the synthetic audio-visual corpus of the demo model",
                       description="Spoken alphanumeric strings from flite / festival / espeak-ng voices "
                                   "and talking faces, as mp4 files plus manifest.jsonl. Resumes: rows "
                                   "already in the manifest are kept. Clean audio: noise is added by "
                                   "training and eval.")
    p.add_argument("--out", required=True, help="corpus directory (manifest.jsonl, <split>/*.mp4)")
    p.add_argument("--n", type=int, required=True, help="number of utterances")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["train", "test", "sealed"], default="train",
                   help="voices and faces of the splits are disjoint; test is the dev set (choices are made on "
                   "it), sealed the final table's (nothing is tuned on it)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Write (or complete) the corpus and name its manifest."""
    from smop_edge.recipe.corpus import synth_corpus
    from smop_edge.runtime.transcribe import progress_bar

    show = progress_bar(not args.quiet, piped_lines=True)
    manifest = synth_corpus(args.out, args.n, args.seed, args.split, args.workers,
                            progress=(lambda done, total: show("synth", done, total)) if show else None)
    print(f"{manifest}: {args.n} {args.split} utterances")
    return 0


# ---- train ------------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    """`train`: manifest, run folder, model, optimisation, task mix, fine-tuning and caches."""
    p = sub.add_parser("train", help="train the demo model (or its MLP baseline) on a synthetic corpus",
                       description="Train a small Llama-SMoP from scratch on a `synth` corpus: one model for "
                                   "ASR, VSR and AVSR. Mouth crops are cached next to the manifest; the run "
                                   "saves its state every 100 steps and the same command resumes it.")
    p.add_argument("manifest", help="training manifest.jsonl")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pth, tokenizer.json, train_log.jsonl")
    p.add_argument("--model", choices=["demo-dedr", "demo-mlp", "demo-v2-small", "demo-v2-smollm"],
                   default="demo-dedr", help="demo-v2-*: a frozen Whisper tiny.en encoder (and SmolLM2-135M "
                   "with LoRA), read from their registry wheels")
    # unset options take TrainOptions' defaults (the recipe's: 14000 steps, 11000 of them ASR-only)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--asr-first", type=int, help="ASR-only steps before tasks are mixed")
    p.add_argument("--seed", type=int)
    p.add_argument("--audio-mode", choices=["fast", "faithful"], help="the audio encoder's input as the bundle "
                   "will run it (default fast); faithful (30 s padded, as Whisper was trained) needs a frozen "
                   "pretrained encoder (demo-v2-*), whose outputs are computed once and cached beside the manifest")
    p.add_argument("--task-mix", nargs="+", metavar="TASK=SHARE",
                   help="how often each task is drawn after the ASR-only steps (shares are normalised; "
                   "default avsr=0.5 asr=0.25 vsr=0.25)")
    p.add_argument("--snapshot-at", type=int, nargs="+", metavar="STEP",
                   help="also write checkpoint-STEP.pth at these steps (to export and judge a run mid-way)")
    p.add_argument("--init", metavar="CHECKPOINT", help="fine-tune a trained model (its tokenizer.json beside "
                   "it; e.g. models/demo/checkpoint.pth) instead of training from scratch: no length "
                   "curriculum, noise from the first step")
    p.add_argument("--init-lips", metavar="CHECKPOINT", help="start the lip encoder from this checkpoint's (the "
                   "same encoder configuration; e.g. the small v2 model's for demo-v2-smollm)")
    p.add_argument("--freeze", nargs="+", metavar="PART", help="hold these parts as --init left them (e.g. "
                   "audio_proj llm: the ASR path, so that a mixed stage trains only what reads the lips)")
    p.add_argument("--ctc-weight", type=float, help="weight of an auxiliary CTC loss on the encoders' tokens "
                   "(training-only heads; default 0: off)")
    p.add_argument("--token-masks", action="store_true", help="with a frozen audio encoder: time and channel "
                   "masks on its cached tokens (SpecAugment's place)")
    p.add_argument("--composed-pool", type=int, help="with a frozen audio encoder and a word bank: composed "
                   "utterances encoded once (default 600)")
    p.add_argument("--dev", metavar="MANIFEST", help="held-out manifest: greedy WER every 500 steps")
    p.add_argument("--crop-cache", help="mouth-crop cache folder (default: crops/ next to the manifest)")
    p.add_argument("--word-bank", metavar="DIR", help="words of the training voices (built here if missing): "
                   "half the ASR batches are fresh utterances composed from it, with framewise word targets")
    p.add_argument("--workers", type=int, default=2, help="processes for cropping and the word bank")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume, or fine-tune) with the given options over the recipe's defaults."""
    from smop_edge.recipe.training import TrainOptions, set_threads, train
    from smop_edge.runtime.transcribe import progress_bar

    set_threads(args.threads)
    given = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "seed", "asr_first", "audio_mode",
                                           "ctc_weight", "composed_pool")}
    if args.task_mix:
        given["task_mix"] = _task_mix(args.task_mix)
    opts = TrainOptions(model=args.model, snapshots=tuple(args.snapshot_at or ()), init_lips=args.init_lips,
                        freeze=tuple(args.freeze or ()),
                        token_masks=args.token_masks, **{k: v for k, v in given.items() if v is not None})
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
