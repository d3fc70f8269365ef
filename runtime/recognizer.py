"""Torch-free recognition over a bundle: features -> encoder graphs -> compression -> projector graph
-> prefix assembly -> decoder graph with a KV cache -> text. Mirrors the torch reference step by step.

Static bundles (NPU variant) are driven through the same API: inputs are padded to the encoder's
length bucket with a mask, projector tokens go through in fixed chunks, and the decoder runs fixed
chunks against a fixed-capacity cache; the results equal the dynamic graphs'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import features
from .bundle import Bundle, load_bundle
from .compression import compress
from .decoding import DecodingOptions, decode
from .errors import BundleError, InputError, UsageError
from .manifest import BACKEND_FORMATS, FORMAT_BACKEND, resolve_backend
from .prompt import TASK_MODALITIES, SpecialIds, pick_task, prefix_segments
from .sessions import GraphSession, open_session
from .tokenizer import TextTokenizer, load_tokenizer

if TYPE_CHECKING:
    from .stream import Stream, StreamOptions


@dataclass
class Transcript:
    """A recognition result; `timings` holds milliseconds per stage, `details` backend extras."""

    text: str
    tokens: list[int]
    task: str
    prefix_length: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict, repr=False)


class GraphStepper:
    """`decoding.Stepper` over the dynamic decoder graph; token embeddings are looked up in numpy."""

    def __init__(self, session: GraphSession, embeddings: np.ndarray, prefix: np.ndarray,
                 layers: int, kv_heads: int, head_dim: int, step_session: GraphSession | None = None) -> None:
        self.session, self.embeddings, self.prefix = session, embeddings, prefix
        self.step_session = step_session or session  # the same graph, compiled for one-token steps
        empty = np.zeros((layers, 1, kv_heads, 0, head_dim), np.float32)
        self.keys, self.values = empty, empty.copy()

    def _run(self, session: GraphSession, embeds: np.ndarray) -> np.ndarray:
        out = session.run({"inputs_embeds": embeds, "past_keys": self.keys, "past_values": self.values})
        self.keys, self.values = out["present_keys"], out["present_values"]
        return out["logits"]

    def prefill(self) -> np.ndarray:
        return self._run(self.session, self.prefix)[0]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self._run(self.step_session, np.asarray(self.embeddings[tokens], np.float32)[:, None, :])

    def select(self, rows: np.ndarray) -> None:
        self.keys, self.values = self.keys[:, rows], self.values[:, rows]


class StaticGraphStepper:
    """`decoding.Stepper` over the static decoder graph: fixed chunks, a fixed-capacity cache per
    row, explicit positions (beam rows run one after another)."""

    def __init__(self, session: GraphSession, embeddings: np.ndarray, prefix: np.ndarray, layers: int,
                 kv_heads: int, head_dim: int, chunk: int, capacity: int) -> None:
        self.session, self.embeddings, self.prefix = session, embeddings, prefix
        self.chunk, self.capacity = chunk, capacity
        empty = np.zeros((layers, 1, kv_heads, capacity, head_dim), np.float32)
        self.rows = [(empty, empty.copy())]
        self.length = 0

    def _run(self, row: int, embeds: np.ndarray, position: int, index: int) -> np.ndarray:
        if position + index >= self.capacity:
            raise UsageError(f"input too long for the static decoder: {position + index + 1} positions > "
                             f"KV capacity {self.capacity}")
        padded = np.zeros((1, self.chunk, embeds.shape[-1]), np.float32)
        padded[0, : embeds.shape[0]] = embeds
        keys, values = self.rows[row]
        out = self.session.run({"inputs_embeds": padded, "past_keys": keys, "past_values": values,
                                "position": np.array([position], np.int64), "logit_index": np.array([index], np.int64)})
        self.rows[row] = (out["present_keys"], out["present_values"])
        return out["logits"][0]

    def prefill(self) -> np.ndarray:
        total = self.prefix.shape[1]
        for start in range(0, total, self.chunk):
            part = self.prefix[0, start:start + self.chunk]
            logits = self._run(0, part, start, len(part) - 1)
        self.length = total
        return logits

    def step(self, tokens: np.ndarray) -> np.ndarray:
        logits = [self._run(r, np.asarray(self.embeddings[[t]], np.float32), self.length, 0)
                  for r, t in enumerate(tokens)]
        self.length += 1
        return np.stack(logits)

    def select(self, rows: np.ndarray) -> None:
        self.rows = [self.rows[r] for r in rows]


def _bucket(sizes: list[int], n: int, what: str) -> int:
    for size in sizes:
        if n <= size:
            return size
    raise UsageError(f"{what} of {n} frames is longer than the largest static bucket ({sizes[-1]}): split the input")


class Recognizer:
    """A loaded bundle: `transcribe` a file or arrays, or `create_stream` for live input. Made by
    `smop_edge.runtime.load_recognizer` (or `Recognizer.from_bundle`)."""

    def __init__(self, bundle: Bundle, open_graph: Callable[[Path], GraphSession], tokenizer: TextTokenizer,
                 embeddings: np.ndarray, backend: str,
                 open_step_graph: Callable[[Path], GraphSession] | None = None) -> None:
        self.bundle, self.tokenizer, self.embeddings = bundle, tokenizer, embeddings
        self.backend = backend  # the engine the graphs run on (`auto` resolved)
        self._open, self._sessions = open_graph, {}
        self._open_step = open_step_graph  # None: decode steps run on the prefill's session
        cfg = bundle.config
        self.tasks: list[str] = cfg.tasks
        self.faithful = bundle.manifest.audio_mode == "faithful"
        self.static = bundle.manifest.static
        self.ids = SpecialIds.from_tokenizer(tokenizer, cfg.tokens.bos, cfg.tokens.eos, cfg.tokens.added)

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "auto", device: str = "CPU",
                    threads: int | None = None, precision: str = "f32", exact: bool = True,
                    digest: str | None = None,
                    wrap_session: Callable[[GraphSession], GraphSession] | None = None) -> "Recognizer":
        """Verify the bundle's sha256 sums (and its manifest's against a pinned `digest`), then load graphs
        on `backend` (each when first needed; `wrap_session` wraps each, e.g. to record its outputs); `auto`:
        the engine measured fastest for the bundle's format here (`manifest.resolve_backend`)."""
        bundle = load_bundle(path, verify=True, digest=digest)
        fmt = bundle.manifest.format
        backend = resolve_backend(backend, fmt)
        if backend in BACKEND_FORMATS and fmt not in BACKEND_FORMATS[backend]:
            raise UsageError(f"bundle {path} holds {fmt} graphs, which {backend} cannot run; use --backend "
                             f"{FORMAT_BACKEND[fmt]}")
        open_graph = partial(open_session, backend=backend, device=device, threads=threads, precision=precision,
                             exact=exact)
        # OpenVINO's bf16 kernels multiply one row by compressed weights slower than its f32 ones (paper-scale
        # int8 decoder, one step past 200 tokens: 104 vs 95 ms), while a prefill's hundreds of rows gain (150
        # rows: 468 vs 1086 ms; docs/benchmarks.md): decode steps stay in f32
        reduced = backend == "openvino" and device == "CPU" and precision != "f32"
        open_step = partial(open_graph, precision="f32") if reduced else None
        if wrap_session is not None:
            wrapped = lambda opener: lambda file: wrap_session(opener(file))  # noqa: E731
            open_graph, open_step = wrapped(open_graph), open_step and wrapped(open_step)
        try:  # within a bundle whose digests check out, a file or field that does not fit is the bundle's fault
            embeddings = np.load(bundle.file(bundle.manifest.embeddings.file), mmap_mode="r")
            if list(embeddings.shape) != bundle.manifest.embeddings.shape:  # which Manifest.check held to the model
                raise BundleError(f"{path}: the token embeddings are {list(embeddings.shape)}, the manifest says "
                                  f"{bundle.manifest.embeddings.shape}")
            tok = load_tokenizer(bundle.file(bundle.manifest.tokenizer.file), expected_size=bundle.config.llm.vocab)
            rec = cls(bundle, open_graph, tok, embeddings, backend, open_step)
        except (InputError, ValueError) as exc:
            raise BundleError(f"{path}: {exc}") from None
        rec.session("projector")  # fail early on a graph the backend cannot load
        return rec

    def session(self, stage: str, bucket: int | None = None) -> GraphSession:
        key = (stage, bucket)
        if key not in self._sessions:
            self._sessions[key] = self._open(self.bundle.file(self.bundle.stages[stage].graph(bucket).file))
        return self._sessions[key]

    def create_stream(self, task: str | None = None, options: DecodingOptions | None = None,
                      stream_options: "StreamOptions | None" = None) -> "Stream":
        """A live input (audio chunks, optional video frames) that yields partial and final results."""
        from .stream import Stream

        return Stream(self, task, options, stream_options)

    # ---- stages ---------------------------------------------------------------------------------
    def encode_video(self, frames: np.ndarray) -> np.ndarray:
        """Normalised mouth crops [T, 88, 88] -> video features [T, d]."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 3:
            raise UsageError(f"mouth frames must be [T, H, W], got shape {frames.shape}")
        t = frames.shape[0]
        if not self.static:
            return self.session("video_encoder").run({"frames": frames[None]})["video_features"][0]
        size = _bucket(self.static.video_buckets, t, "video")
        padded = np.zeros((1, size) + frames.shape[1:], np.float32)
        padded[0, :t] = frames
        mask = np.arange(size)[None] >= t
        return self.session("video_encoder", size).run({"frames": padded, "padding_mask": mask})["video_features"][0, :t]

    def encode_audio(self, audio: np.ndarray, timings: dict[str, float] | None = None) -> np.ndarray:
        """16 kHz mono audio -> the encoder frames the reference keeps [keep, d]."""
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        try:
            mel, keep = features.audio_encoder_input(audio, self.bundle.config.audio_encoder.mel_bins, self.faithful)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        timings["features"] = elapsed_ms(t0)
        t0 = time.perf_counter()
        if self.static and not self.faithful:
            n = mel.shape[1]
            size = _bucket(self.static.audio_buckets, n, "audio")
            feeds = {"mel": np.pad(mel, ((0, 0), (0, size - n)))[None], "mel_mask": (np.arange(size) < n)[None]}
            out = self.session("audio_encoder", size).run(feeds)
        else:
            out = self.session("audio_encoder").run({"mel": mel[None]})
        timings["audio_encoder"] = elapsed_ms(t0)
        return out["audio_features"][0, :keep]

    def project(self, tokens: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compressed tokens per modality -> `{m}_embeds` (and `{m}_router_probs` for SMoP)."""
        stage = self.bundle.stages["projector"]
        session = self.session("projector")
        names = [m for m in ("audio", "video") if f"{m}_tokens" in session.input_names]
        chunk = self.static.projector_chunk if self.static else None
        longest = max(len(x) for x in tokens.values())
        size = chunk or longest
        results: dict[str, list[np.ndarray]] = {}
        for start in range(0, longest, size):
            feeds = {}
            for m in names:  # a modality the task does not use gets zeros
                x = tokens.get(m, np.zeros((0, stage.input_widths[m]), np.float32))[start:start + size]
                rows = size if chunk else max(len(x), 1)
                feeds[f"{m}_tokens"] = np.pad(x, ((0, rows - len(x)), (0, 0))).astype(np.float32)
            for key, value in session.run(feeds).items():
                results.setdefault(key, []).append(value)
        return {key: np.concatenate(parts)[: len(tokens[key.split("_")[0]])]
                for key, parts in results.items() if key.split("_")[0] in tokens}

    def stepper(self, prefix: np.ndarray):
        llm = self.bundle.config.llm
        dims = (llm.layers, llm.kv_heads, llm.head_dim)
        if self.static:
            return StaticGraphStepper(self.session("decoder"), self.embeddings, prefix, *dims,
                                      self.static.decoder_chunk, self.static.kv_capacity)
        return GraphStepper(self.session("decoder"), self.embeddings, prefix, *dims, step_session=self._step_session())

    def _step_session(self) -> GraphSession | None:
        """The decoder compiled for one-token steps, where that differs from the prefill's (`from_bundle`)."""
        if self._open_step is None or getattr(self.session("decoder"), "precision", None) == "f32":
            return None  # (a CPU without bf16 / f16 units: OpenVINO compiled the prefill's decoder in f32 already)
        key = ("decoder", "step")
        if key not in self._sessions:
            self._sessions[key] = self._open_step(self.bundle.file(self.bundle.stages["decoder"].graph(None).file))
        return self._sessions[key]

    # ---- whole utterance ------------------------------------------------------------------------
    def encode(self, audio: np.ndarray | None, frames: np.ndarray | None, task: str,
               timings: dict[str, float] | None = None) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
        """Encoders + compression + projector: (audio embeds [Na, H], video embeds [Nv, H], router probs)."""
        cfg = self.bundle.config
        timings = {} if timings is None else timings
        need = TASK_MODALITIES[task]
        tokens = {}
        if "video" in need:
            t0 = time.perf_counter()
            video = self.encode_video(frames)
            timings["video_encoder"] = elapsed_ms(t0)
            tokens["video"] = compress(video, cfg.video_compression.mode, cfg.video_compression.rate)
        if "audio" in need:
            if "video" in need:
                audio = features.align_audio_to_video(audio, len(frames))
            enc = self.encode_audio(audio, timings)
            tokens["audio"] = compress(enc, cfg.audio_compression.mode, cfg.audio_compression.rate)
        t0 = time.perf_counter()
        out = self.project(tokens)
        timings["projector"] = elapsed_ms(t0)
        probs = {m: out[f"{m}_router_probs"] for m in need if f"{m}_router_probs" in out}
        return out.get("audio_embeds"), out.get("video_embeds"), probs

    def assemble_prefix(self, task: str, audio: np.ndarray | None, video: np.ndarray | None) -> np.ndarray:
        """[1, L, H]: token embeddings and projected tokens concatenated in the reference order."""
        prompt = self.tokenizer.encode(self.bundle.config.tokens.prompts[task])
        slots = {"audio": audio, "video": video}
        pieces = [slots[s.modality] if s.modality else np.asarray(self.embeddings[list(s.ids)], np.float32)
                  for s in prefix_segments(task, self.ids, prompt) if s.modality or s.ids]
        return np.concatenate(pieces, axis=0)[None].astype(np.float32)

    def transcribe(self, audio: "np.ndarray | str | Path | None" = None, frames: np.ndarray | None = None,
                   task: str | None = None, options: DecodingOptions | None = None):
        """16 kHz mono `audio` and/or normalised 88x88 mouth `frames` [T, 88, 88] -> Transcript; or a media
        file's path as `audio` -> FileTranscript (decoding, lip cropping, long inputs split at pauses)."""
        if isinstance(audio, (str, Path)):
            from .transcribe import transcribe_media

            return transcribe_media(self, audio, task, options=options)
        options = options or DecodingOptions()
        task = pick_task(self.tasks, audio is not None, frames is not None, task)
        timings: dict[str, float] = {}
        a, v, probs = self.encode(audio, frames, task, timings)
        prefix = self.assemble_prefix(task, a, v)
        t0 = time.perf_counter()
        tokens = decode(self.stepper(prefix), {self.ids.eos}, options)
        timings["decoder"] = elapsed_ms(t0)
        return Transcript(self.tokenizer.decode(tokens), tokens, task, prefix.shape[1], timings,
                          {"router_probs": probs})


def elapsed_ms(t0: float) -> float:
    """Milliseconds since `t0` (a `time.perf_counter()` reading), for per-stage timings."""
    return round((time.perf_counter() - t0) * 1000.0, 3)
