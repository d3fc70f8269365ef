"""The demo model's training recipe: a Llama-SMoP (or its MLP-projector baseline) trained from scratch
on the synthetic corpus, one model for ASR, VSR and AVSR (modality dropout: each batch draws a task).

Loss: next-token cross-entropy on the transcript (+ EOS) after the task's prefix, plus the SMoP
load-balancing and router z losses and, with training-only heads, framewise word losses: audio tokens
of utterances composed from the word bank (whose word spans are known) and video tokens against the
audio head on the same clip's clean audio (an auxiliary CTC loss on the encoders is an option, off). Every `save_every` steps the whole state (weights, optimiser, random generators,
curve) is written, and a rerun of the same command resumes from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from smop_edge.models import zoo
from smop_edge.models.checkpoint import load_model, save_checkpoint
from smop_edge.models.compression import compress
from smop_edge.runtime.config import TASKS, ModelConfig, TokensConfig
from smop_edge.runtime.manifest import AUDIO_MODES
from smop_edge.models.llama_smop import LlamaSMoP
from smop_edge.models.pretrained.parts import (AUDIO_ENCODER, freeze_pretrained, load_pretrained, pretrained_parts,
                                               save_smollm2_tokenizer, uses_smollm2)
from smop_edge.models.projector import load_balancing_loss, router_z_loss
from smop_edge.models.tokenizer_builder import train_base_tokenizer
from smop_edge.runtime.errors import CheckpointError, UsageError
from smop_edge.runtime.features import ENCODER_FRAMES_PER_SECOND, SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME
from smop_edge.runtime.prompt import TASK_MODALITIES, SpecialIds, prefix_segments
from smop_edge.runtime.scoring import corpus_wer
from smop_edge.runtime.tokenizer import TextTokenizer, load_tokenizer

from . import audio_cache, curves
from .corpus import WORDS, read_manifest, sample_words
from .word_bank import SILENCE, WordBank, frame_labels
from .train_data import Augment, Batch, Example, batches, load_examples, make_batch

STATE = "train_state.pt"
LOG = "train_log.jsonl"
CURVES = "curves.png"


@dataclass
class TrainOptions:
    """Hyper-parameters of one training run (recorded in the output folder)."""

    model: str = "demo-dedr"
    steps: int = 14000  # ~2 h on 2 cores (held-out ASR 30.7 %; 9000 steps, 7000 ASR-only: 39.5 %)
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    task_mix: dict[str, float] = field(default_factory=lambda: {"avsr": 0.5, "asr": 0.25, "vsr": 0.25})
    save_every: int = 100
    log_every: int = 25
    ctc_weight: float = 0.0  # auxiliary CTC on the encoders (0: off)
    frame_weight: float = 1.0  # framewise word loss on the audio tokens of composed utterances
    composed_share: float = 0.5  # share of ASR batches composed from the word bank (when one is given)
    curriculum: int = 2400  # with a word bank: steps over which composed utterances grow from 1 to 8 words
    #                         (all ASR batches are composed meanwhile): single words teach the decoder to
    #                         read the audio tokens before it must learn their order
    noise_delay: int = 1500  # clean steps first: with noise from step 0 the encoder barely learnt words in 1200 steps
    noise_ramp: int = 1000  # then steps over which the share of noisy examples grows from 0 to its full value
    asr_first: int = 11000  # ASR-only steps first (5x cheaper than video steps): audio and LLM align early
    eval_every: int = 500
    eval_size: int = 48
    seed: int = 0
    snapshots: tuple[int, ...] = ()  # steps at which checkpoint-STEP.pth is also written (to judge a run mid-way)
    init: str | None = None  # fine-tune: start from this official-layout checkpoint (tokenizer.json beside it)
    init_lips: str | None = None  # the lip encoder (video_encoder.*) from this checkpoint instead (the same
    #                               encoder configuration: e.g. the small v2 model's trained lips for SmolLM2's)
    audio_mode: str = "fast"  # the audio encoder's input as the bundle will run it; faithful (30 s padded)
    #                           needs a frozen pretrained encoder, whose outputs are cached
    noise_variants: int = 2  # with a frozen audio encoder: noisy encodings cached per utterance
    composed_pool: int = 600  # with a frozen audio encoder and a word bank: composed utterances cached
    token_masks: bool = False  # with a frozen audio encoder: SpecAugment-like masks on its cached tokens
    freeze: tuple[str, ...] = ()  # parts held as `init` left them (e.g. audio_proj and llm: the ASR path of
    #                               an ASR stage, so a mixed stage trains only what reads the lips)

    def __post_init__(self) -> None:
        unknown = set(self.task_mix) - set(TASKS)
        if unknown or not self.task_mix:
            raise UsageError(f"task mix: tasks are {', '.join(TASKS)}, got {', '.join(sorted(self.task_mix)) or 'none'}")
        shares = list(self.task_mix.values())
        if not all(math.isfinite(s) and s >= 0 for s in shares) or sum(shares) <= 0:
            raise UsageError(f"task mix: shares must be finite, non-negative and not all zero, got {self.task_mix}")
        if self.audio_mode not in AUDIO_MODES:
            raise UsageError(f"audio mode must be one of {', '.join(AUDIO_MODES)}, got {self.audio_mode!r}")

    def fine_tuning(self, checkpoint: str) -> "TrainOptions":
        """These options, starting from a trained `checkpoint`: no length curriculum and no clean start,
        which are there for a model that cannot read words yet."""
        return replace(self, init=str(checkpoint), curriculum=0, noise_delay=0, noise_ramp=0)

    @property
    def mixed_tasks(self) -> list[str]:
        """The tasks the mixed steps draw (a share above 0), in TASKS order."""
        return [t for t in TASKS if self.task_mix.get(t, 0) > 0]

    @property
    def trains_video(self) -> bool:
        """Whether any step has a video task (an ASR-only run needs no mouth crops)."""
        return self.asr_first < self.steps and any(t != "asr" for t in self.mixed_tasks)

    def tasks_at(self, step: int) -> list[str]:
        """The tasks the dev set is read on at `step`: ASR, and the mix's other tasks once the ASR-only
        steps are over (before, they are not trained yet)."""
        return [t for t in TASKS if t == "asr" or (step > self.asr_first and t in self.mixed_tasks)]


def domain_tokenizer(path: Path) -> TextTokenizer:
    """Train (once) the demo model's byte-level BPE tokenizer on the prompts and alphanumeric strings,
    write the base tokenizer to `path` and return it with the AVSR tokens added."""
    if not path.exists():
        rng = np.random.default_rng(0)
        texts = [" ".join(sample_words(rng)) for _ in range(4000)] + [" ".join(WORDS)] * 20
        texts += list(TokensConfig().prompts.values()) * 50
        train_base_tokenizer(texts, vocab_size=320).save(str(path))
    return load_tokenizer(path)


class AuxHeads(torch.nn.Module):
    """Training-only linear heads on the compressed encoder tokens: one per modality to the vocabulary
    for an auxiliary CTC loss (as hybrid CTC/attention AVSR recipes use), and one per modality to the
    words (+ silence) for the framewise word losses: audio tokens learn the known word spans of composed
    utterances; video tokens (12.5 Hz, as the audio tokens) learn what the audio head says about the
    same 80 ms of the clip's clean audio. They teach the encoders the words early; they are not part of
    the model and are not saved in its checkpoint."""

    def __init__(self, cfg: ModelConfig, vocab: int) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleDict({m: torch.nn.Linear(cfg.projector_input_dim(m), vocab)
                                          for m, present in (("audio", cfg.has_audio), ("video", cfg.has_video))
                                          if present})
        self.samples_per_token = SAMPLE_RATE // ENCODER_FRAMES_PER_SECOND * cfg.audio_compression.rate
        self.words = torch.nn.Linear(cfg.projector_input_dim("audio"), SILENCE + 1) if cfg.has_audio else None
        both = cfg.has_audio and cfg.has_video
        self.video_words = torch.nn.Linear(cfg.projector_input_dim("video"), SILENCE + 1) if both else None

    def frame_loss(self, tokens: list[torch.Tensor], spans: list[list[tuple[int, int, int]]]) -> torch.Tensor:
        """Cross-entropy of each audio token against the word its centre falls in."""
        labels = [torch.from_numpy(frame_labels(s, len(t), self.samples_per_token)) for t, s in zip(tokens, spans)]
        return F.cross_entropy(self.words(torch.cat(tokens)).float(), torch.cat(labels))

    def video_frame_loss(self, tokens: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of each video token against the audio head's word distribution (`teacher`
        audio tokens of the clean audio, same rate; the shorter of the two sets the length)."""
        n = [min(len(t), len(a)) for t, a in zip(tokens, teacher)]
        with torch.no_grad():
            target = torch.softmax(self.words(torch.cat([a[:k] for a, k in zip(teacher, n)])).float(), dim=-1)
        logits = self.video_words(torch.cat([t[:k] for t, k in zip(tokens, n)])).float()
        return F.cross_entropy(logits, target)

    def loss(self, modality: str, tokens: list[torch.Tensor], targets: list[list[int]], blank: int) -> torch.Tensor:
        lengths = torch.tensor([len(t) for t in tokens])
        padded = torch.nn.utils.rnn.pad_sequence(tokens)  # [T, B, D]
        log_probs = F.log_softmax(self.heads[modality](padded).float(), dim=-1)
        return F.ctc_loss(log_probs, torch.tensor([i for t in targets for i in t]), lengths,
                          torch.tensor([len(t) for t in targets]), blank=blank, zero_infinity=True)


def _audio_tokens(model: LlamaSMoP, mel: torch.Tensor, mask: torch.Tensor, keeps: list[int]) -> list[torch.Tensor]:
    """Each example's compressed audio-encoder tokens, its kept frames only."""
    pooled = compress(model.audio_encoder.forward_any_length(mel, mask), model.cfg.audio_compression)
    return [pooled[i, : keep // model.cfg.audio_compression.rate] for i, keep in enumerate(keeps)]


def batch_loss(model: LlamaSMoP, batch: Batch, ids: SpecialIds, prompt_ids: list[int], aux: AuxHeads | None = None,
               ctc_weight: float = 0.0, frame_weight: float = 0.0, audio_tokens: list[torch.Tensor] | None = None,
               teacher: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced loss of one batch (plus the auxiliary losses when `aux` is given): (total, its parts).
    `audio_tokens` / `teacher`: the (noisy / clean) compressed audio tokens from a cache instead of the mels."""
    cfg = model.cfg
    tokens: dict[str, list[torch.Tensor]] = {}
    if audio_tokens is not None:
        tokens["audio"] = audio_tokens
    elif batch.mel is not None:
        tokens["audio"] = _audio_tokens(model, batch.mel, batch.mel_mask, batch.audio_keep)
    if batch.frames is not None:
        enc = model.video_encoder(batch.frames, batch.frames_pad)
        pooled = compress(enc, cfg.video_compression)
        tokens["video"] = [pooled[i, : n // cfg.video_compression.rate] for i, n in enumerate(batch.video_len)]
    # project all real tokens at once (padding never reaches the routers or their losses)
    flat = {m: torch.cat(parts)[None] for m, parts in tokens.items()}
    a, v, routings = model.project_tokens(flat.get("audio"), flat.get("video"))
    projected = {}
    for m, out in (("audio", a), ("video", v)):
        if out is not None:
            projected[m] = torch.split(out[0], [len(t) for t in tokens[m]])
    embed = model.llm.get_input_embeddings()
    segments = prefix_segments(batch.task, ids, prompt_ids)
    rows, targets = [], []
    for i, text_ids in enumerate(batch.ids):
        pieces = [projected[s.modality][i] if s.modality else embed(torch.tensor(s.ids)) for s in segments]
        prefix_len = sum(len(p) for p in pieces)
        pieces.append(embed(torch.tensor(text_ids, dtype=torch.long)))
        rows.append(torch.cat(pieces))
        targets.append((prefix_len - 1, torch.tensor(text_ids + [ids.eos])))
    length = max(len(r) for r in rows)
    x = torch.zeros(len(rows), length, rows[0].shape[-1])
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = r
        mask[i, : len(r)] = 1
    logits = model.llm(inputs_embeds=x, attention_mask=mask).logits
    picked = torch.cat([logits[i, start:start + len(t)] for i, (start, t) in enumerate(targets)])
    ce = F.cross_entropy(picked.float(), torch.cat([t for _, t in targets]))
    parts = {"ce": float(ce.detach())}
    loss = ce
    if routings:
        lb = torch.stack([load_balancing_loss(r) for r in routings]).mean()
        z = torch.stack([router_z_loss(r) for r in routings]).mean()
        loss = loss + cfg.projector.load_balancing_coef * lb + cfg.projector.z_loss_coef * z
        parts.update(lb=float(lb.detach()), z=float(z.detach()))
    if aux is not None and ctc_weight:
        ctc = torch.stack([aux.loss(m, t, batch.ids, ids.pad) for m, t in tokens.items()]).mean()
        loss = loss + ctc_weight * ctc
        parts["ctc"] = float(ctc.detach())
    if aux is not None and frame_weight and batch.spans is not None and "audio" in tokens:
        frames = aux.frame_loss(tokens["audio"], batch.spans)
        loss = loss + frame_weight * frames
        parts["frame"] = float(frames.detach())
    if aux is not None and frame_weight and aux.video_words is not None and \
            (teacher is not None or batch.clean_mel is not None):
        if teacher is None:  # the clean audio's tokens, encoded only when the loss needs them
            with torch.no_grad():
                teacher = _audio_tokens(model, batch.clean_mel, batch.clean_mel_mask, batch.clean_keep)
        lips_loss = aux.video_frame_loss(tokens["video"], teacher)
        loss = loss + frame_weight * lips_loss
        parts["video_frame"] = float(lips_loss.detach())
    return loss, parts


def learning_rate(step: int, opts: TrainOptions) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak, over the ASR-only phase; the mixed phase
    restarts at half the peak (its video encoder starts from scratch) with half the warm-up."""
    start, end, peak, warmup = 0, opts.steps, opts.lr, opts.warmup
    if 0 < opts.asr_first < opts.steps:
        if step < opts.asr_first:
            end = opts.asr_first
        else:
            start, peak, warmup = opts.asr_first, opts.lr / 2, opts.warmup // 2
    if step - start < warmup:
        return peak * (step - start + 1) / warmup
    progress = (step - start - warmup) / max(1, end - start - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.inference_mode()
def quick_wer(model: LlamaSMoP, tokenizer: TextTokenizer, examples: list[Example],
              tasks: list[str] | None = None, audio_mode: str = "fast") -> dict[str, float]:
    """Greedy WER per task (default: all the model's) on clean `examples` with the torch reference."""
    from smop_edge.models.reference import ReferenceRecognizer
    from smop_edge.runtime import lips

    rec = ReferenceRecognizer(model, tokenizer, audio_mode=audio_mode)
    out = {}
    for task in tasks or model.cfg.tasks:
        pairs = [(ex.text, rec.transcribe(ex.audio, lips.normalize_rois(ex.rois) if len(ex.rois) else None,
                                          task).text) for ex in examples]
        out[task] = round(corpus_wer(pairs)[0], 4)
    return out


def train(manifest: str, out: str | Path, opts: TrainOptions, dev_manifest: str | None = None,
          crop_cache: str | None = None, workers: int = 2, word_bank: str | None = None,
          progress: Callable[[str, int, int], None] | None = None, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) into `out`; returns the path of the final official-layout checkpoint (and draws
    the curves into curves.png). With a `word_bank` folder, `opts.composed_share` of the ASR batches are
    utterances composed from it (all of them during the length curriculum)."""
    for m in (manifest, dev_manifest):  # a missing or unreadable manifest fails before anything is written
        if m is not None:
            read_manifest(m)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "options.json").write_text(json.dumps(asdict(opts), indent=2))
    cfg = zoo.get(opts.model)
    if opts.init and not (out / "tokenizer.json").exists():
        _copy_tokenizer(Path(opts.init), out / "tokenizer.json")
    elif not (out / "tokenizer.json").exists() and uses_smollm2(cfg):
        save_smollm2_tokenizer(out / "tokenizer.json")
    tokenizer = domain_tokenizer(out / "tokenizer.json")
    cfg.llm.vocab = tokenizer.vocab_size
    torch.manual_seed(opts.seed)
    model = LlamaSMoP(cfg)
    state_path = out / STATE
    pretrained = pretrained_parts(model)
    if not state_path.exists():  # a resumed run takes every weight from its state below
        if opts.init:
            _load_weights(model, Path(opts.init))
            log(f"starting from {opts.init}")
        elif pretrained:
            load_pretrained(model, pretrained)
            log(f"pretrained parts: {', '.join(pretrained)}")
        if opts.init_lips:
            _load_weights(model, Path(opts.init_lips), prefix="video_encoder.")
            log(f"the lip encoder from {opts.init_lips}")
    freeze_pretrained(model, pretrained)
    freeze_parts(model, opts.freeze)
    frozen_audio = AUDIO_ENCODER in pretrained
    if opts.audio_mode == "faithful" and not frozen_audio:
        raise UsageError("--audio-mode faithful trains on cached outputs of a frozen pretrained audio encoder "
                         "(the demo-v2 models); a trained encoder runs in fast mode")
    ids = SpecialIds.from_tokenizer(tokenizer, cfg.tokens.bos, cfg.tokens.eos, cfg.tokens.added)
    prompt_ids = {t: tokenizer.encode(p) for t, p in cfg.tokens.prompts.items()}
    show = (lambda name: (lambda done, total: progress(name, done, total))) if progress else (lambda name: None)
    video = opts.trains_video
    data = load_examples(manifest, tokenizer, crop_cache, workers, show("load"), video=video)
    dev = (load_examples(dev_manifest, tokenizer, None, workers, show("load dev"), opts.eval_size, video)
           if dev_manifest else [])
    log(f"{len(data)} training utterances ({sum(len(e.audio) for e in data) / 16000 / 3600:.2f} h), "
        f"{len(dev)} dev; model {cfg.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.2f} M trained")

    bank = WordBank(word_bank) if word_bank else None
    augment = Augment()
    cache, pool = None, []
    if frozen_audio:  # encode once: the audio tokens of every utterance and of a pool of composed ones
        pool_rng = np.random.default_rng([opts.seed, 1])
        pool = [composed_example(bank, tokenizer, pool_rng) for _ in range(opts.composed_pool)] if bank else []
        faithful = opts.audio_mode == "faithful"
        cache = audio_cache.load_or_build(audio_cache.path_for(manifest, faithful), model, data + pool, faithful,
                                          opts.noise_variants, augment, opts.seed, show("audio cache"))
    aux = AuxHeads(cfg, tokenizer.vocab_size) if opts.ctc_weight or opts.frame_weight else None
    params = [p for p in model.parameters() if p.requires_grad] + (list(aux.parameters()) if aux else [])
    optimizer = torch.optim.AdamW(params, lr=opts.lr, betas=(0.9, 0.98), weight_decay=opts.weight_decay)
    rng = np.random.default_rng(opts.seed)
    step, queue = 0, []
    if state_path.exists():
        try:  # tensors and plain values only: a state file cannot run code when it is read
            state = torch.load(state_path, weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{state_path} is not a training state smop-edge can read safely "
                                  f"({type(exc).__name__}); remove it to train from the start") from None
        model.load_state_dict(state["model"])
        if aux is not None:
            aux.load_state_dict(state["aux"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step, queue = state["step"], state["queue"]
        if (out / LOG).exists():  # rows logged after the saved state will be logged again
            kept = [r for r in (out / LOG).read_text().splitlines() if json.loads(r)["step"] <= step]
            (out / LOG).write_text("".join(r + "\n" for r in kept))
        log(f"resumed at step {step}")
    tasks, weights = list(opts.task_mix), np.asarray(list(opts.task_mix.values()), np.float64)
    weights /= weights.sum()
    full_noise = augment.p_noise
    lengths = [len(e.audio) // SAMPLES_PER_VIDEO_FRAME for e in data]  # video frames
    model.train()
    t_last, parts_sum, parts_n, n_sum, drawn = time.perf_counter(), {}, {}, 0, {}
    with (out / LOG).open("a") as log_file:
        while step < opts.steps:
            if not queue:
                queue = batches(len(data), lengths, opts.batch_size, rng)
            task = "asr" if step < opts.asr_first else tasks[int(rng.choice(len(tasks), p=weights))]
            augment.p_noise = full_noise * min(1.0, max(0, step - opts.noise_delay) / max(1, opts.noise_ramp))
            in_curriculum = step < opts.curriculum and cache is None  # a frozen encoder reads words already
            indices = None
            if task == "asr" and bank and (in_curriculum or rng.random() < opts.composed_share):
                if cache:
                    indices = (len(data) + rng.integers(len(pool), size=opts.batch_size)).tolist()
                    examples = [pool[i - len(data)] for i in indices]
                else:
                    items = min(8, 1 + 8 * step // opts.curriculum) if in_curriculum else 8
                    examples = [composed_example(bank, tokenizer, rng, items) for _ in range(opts.batch_size)]
            else:
                indices = queue.pop()
                examples = [data[i] for i in indices]
            batch = make_batch(examples, task, cfg.audio_encoder.mel_bins, augment, rng, with_audio=cache is None)
            cached = {}
            if cache:
                if "audio" in TASK_MODALITIES[task]:
                    cached["audio_tokens"] = cache.draw(indices, augment.p_noise, rng)
                    if opts.token_masks:
                        cached["audio_tokens"] = [augment.tokens(t, rng) for t in cached["audio_tokens"]]
                if "video" in TASK_MODALITIES[task]:
                    cached["teacher"] = cache.clean_tokens(indices)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, opts)
            loss, parts = batch_loss(model, batch, ids, prompt_ids[task], aux, opts.ctc_weight, opts.frame_weight,
                                     **cached)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
                parts_n[k] = parts_n.get(k, 0) + 1  # some parts exist only for some batches (frame)
            n_sum += 1
            drawn[task] = drawn.get(task, 0) + 1
            if step % opts.log_every == 0 or step == opts.steps:
                now = time.perf_counter()
                row = {"step": step, "lr": round(learning_rate(step, opts), 6),
                       **{k: round(v / parts_n[k], 4) for k, v in parts_sum.items()},
                       "s_per_step": round((now - t_last) / n_sum, 3), "tasks": drawn}
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                eta = (opts.steps - step) * row["s_per_step"] / 60
                log(f"step {step}/{opts.steps} ce {row['ce']:.3f} lr {row['lr']:.2e} "
                    f"{row['s_per_step']:.2f} s/step, {eta:.0f} min left")
                t_last, parts_sum, parts_n, n_sum, drawn = now, {}, {}, 0, {}
            if dev and (step % opts.eval_every == 0 or step == opts.steps):
                dev_tasks = [t for t in opts.tasks_at(step) if t in cfg.tasks]
                row = {"step": step, "dev_wer": quick_wer(model, tokenizer, dev, dev_tasks, opts.audio_mode)}
                model.train()
                log_file.write(json.dumps(row) + "\n")
                log(f"step {step}: dev WER {row['dev_wer']}")
            if step in opts.snapshots and step < opts.steps:
                save_checkpoint(model.eval(), out / snapshot_name(step))
                model.train()
            if step % opts.save_every == 0 or step == opts.steps:
                tmp = state_path.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "aux": aux.state_dict() if aux else None,
                            "optimizer": optimizer.state_dict(), "step": step,
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "queue": queue}, tmp)
                tmp.replace(state_path)
    final = out / "checkpoint.pth"
    save_checkpoint(model.eval(), final)
    curves.plot(out / LOG, out / CURVES)
    return final


def _copy_tokenizer(checkpoint: Path, dest: Path) -> None:
    """A fine-tuned model keeps its vocabulary: the tokenizer.json beside `checkpoint` becomes the run's."""
    source = checkpoint.with_name("tokenizer.json")
    if not source.exists():
        raise CheckpointError(f"{checkpoint}: fine-tuning needs the model's tokenizer.json beside it")
    shutil.copyfile(source, dest)


def _load_weights(model: LlamaSMoP, checkpoint: Path, prefix: str = "") -> None:
    """Copy a trained model's weights into `model` (same configuration, strictly the same keys), or only
    those under `prefix` (every one of them, each of the same shape)."""
    trained, _ = load_model(checkpoint)
    try:
        if not prefix:
            model.load_state_dict(trained.state_dict(), strict=True)
            return
        part = {k: v for k, v in trained.state_dict().items() if k.startswith(prefix)}
        ours = {k for k in model.state_dict() if k.startswith(prefix)}
        if set(part) != ours:
            raise RuntimeError(f"its {prefix}* keys differ from the model's ({len(part)} vs {len(ours)})")
        model.load_state_dict(part, strict=False)
    except RuntimeError as e:
        what = f"{prefix}* do not fit" if prefix else "is not"
        raise CheckpointError(f"{checkpoint} {what} a {model.cfg.name} model: {str(e).splitlines()[0]}") from e


def freeze_parts(model: LlamaSMoP, parts: tuple[str, ...]) -> None:
    """Hold the model's top-level `parts` (audio_encoder, video_encoder, audio_proj, video_proj, llm) fixed."""
    names = [name for name, _ in model.named_children()]
    for part in parts:
        if part not in names:
            raise UsageError(f"freeze: {model.cfg.name} has the parts {', '.join(names)}, not {part!r}")
        getattr(model, part).requires_grad_(False)


def snapshot_name(step: int) -> str:
    """File name of the official-layout checkpoint written at `step` (TrainOptions.snapshots)."""
    return f"checkpoint-{step}.pth"


def composed_example(bank: WordBank, tokenizer: TextTokenizer, rng: np.random.Generator,
                     max_items: int = 8) -> Example:
    """A fresh audio-only training example of 1-`max_items` words from the word bank, with its word spans."""
    c = bank.compose(rng, max_items)
    return Example(c.audio, np.zeros((0, 0, 0), np.uint8), tokenizer.encode(c.text), c.text, c.spans)


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)
