"""Torch-free recognition over a bundle: features -> encoder graphs -> compression -> projector graph
-> prefix assembly -> decoder graph with a KV cache -> text. Mirrors the torch reference step by step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import features
from .bundle import Bundle, load_bundle
from .compression import compress
from .decoding import DecodingOptions, decode
from .errors import UsageError
from .prompt import TASK_MODALITIES, SpecialIds, pick_task, prefix_segments
from .sessions import GraphSession, open_session
from .tokenizer import TextTokenizer, load_tokenizer


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
    """`decoding.Stepper` over the decoder graph; token embeddings are looked up in numpy."""

    def __init__(self, session: GraphSession, embeddings: np.ndarray, prefix: np.ndarray,
                 layers: int, kv_heads: int, head_dim: int) -> None:
        self.session, self.embeddings, self.prefix = session, embeddings, prefix
        empty = np.zeros((layers, 1, kv_heads, 0, head_dim), np.float32)
        self.keys, self.values = empty, empty.copy()

    def _run(self, embeds: np.ndarray) -> np.ndarray:
        out = self.session.run({"inputs_embeds": embeds, "past_keys": self.keys, "past_values": self.values})
        self.keys, self.values = out["present_keys"], out["present_values"]
        return out["logits"]

    def prefill(self) -> np.ndarray:
        return self._run(self.prefix)[0]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self._run(np.asarray(self.embeddings[tokens], np.float32)[:, None, :])

    def select(self, rows: np.ndarray) -> None:
        self.keys, self.values = self.keys[:, rows], self.values[:, rows]


class Recognizer:
    """The public runtime API: `Recognizer.from_bundle(path).transcribe(audio=..., frames=...)`."""

    def __init__(self, bundle: Bundle, sessions: dict[str, GraphSession], tokenizer: TextTokenizer,
                 embeddings: np.ndarray) -> None:
        self.bundle, self.sessions, self.tokenizer, self.embeddings = bundle, sessions, tokenizer, embeddings
        cfg = bundle.config
        self.tasks: list[str] = cfg["tasks"]
        self.faithful = bundle.manifest["audio_mode"] == "faithful"
        tokens = cfg["tokens"]
        self.ids = SpecialIds.from_tokenizer(tokenizer, tokens["bos"], tokens["eos"], tokens["added"])

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "onnxruntime", device: str = "CPU",
                    threads: int | None = None, precision: str = "f32", exact: bool = True) -> "Recognizer":
        """Verify the bundle's sha256 sums, then load every graph on `backend`."""
        bundle = load_bundle(path, verify=True)
        fmt = bundle.manifest["format"]
        if backend == "onnxruntime" and fmt != "onnx":
            raise UsageError(f"bundle {path} holds {fmt} graphs; use --backend openvino")
        sessions = {stage: open_session(bundle.stage_file(stage), backend, device, threads, precision, exact)
                    for stage in bundle.stages}
        emb = bundle.manifest["embeddings"]
        embeddings = np.load(bundle.file(emb["file"]), mmap_mode="r")
        tok = load_tokenizer(bundle.file(bundle.manifest["tokenizer"]["file"]),
                             expected_size=bundle.config["llm"]["vocab"])
        return cls(bundle, sessions, tok, embeddings)

    def encode(self, audio: np.ndarray | None, frames: np.ndarray | None, task: str,
               timings: dict[str, float] | None = None) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
        """Encoders + compression + projector: (audio embeds [Na, H], video embeds [Nv, H], router probs)."""
        cfg = self.bundle.config
        timings = {} if timings is None else timings
        need = TASK_MODALITIES[task]
        feeds = {}
        if "video" in need:
            frames = np.asarray(frames, dtype=np.float32)
            if frames.ndim != 3:
                raise UsageError(f"mouth frames must be [T, H, W], got shape {frames.shape}")
            t0 = time.perf_counter()
            video = self.sessions["video_encoder"].run({"frames": frames[None]})["video_features"][0]
            timings["video_encoder"] = _ms(t0)
            vc = cfg["video_compression"]
            feeds["video_tokens"] = compress(video, vc["mode"], vc["rate"])
        if "audio" in need:
            if "video" in need:
                audio = features.align_audio_to_video(audio, frames.shape[0])
            t0 = time.perf_counter()
            try:
                mel, keep = features.audio_encoder_input(audio, cfg["audio_encoder"]["mel_bins"], self.faithful)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            timings["features"] = _ms(t0)
            t0 = time.perf_counter()
            enc = self.sessions["audio_encoder"].run({"mel": mel[None]})["audio_features"][0, :keep]
            timings["audio_encoder"] = _ms(t0)
            ac = cfg["audio_compression"]
            feeds["audio_tokens"] = compress(enc, ac["mode"], ac["rate"])
        proj = self.sessions["projector"]
        for m in ("audio", "video"):  # a model input this task does not use gets one dummy token
            if f"{m}_tokens" in proj.input_names and f"{m}_tokens" not in feeds:
                feeds[f"{m}_tokens"] = np.zeros((1, self.bundle.stages["projector"]["input_widths"][m]), np.float32)
        t0 = time.perf_counter()
        out = proj.run(feeds)
        timings["projector"] = _ms(t0)
        probs = {m: out[f"{m}_router_probs"] for m in need if f"{m}_router_probs" in out}
        return (out["audio_embeds"] if "audio" in need else None,
                out["video_embeds"] if "video" in need else None, probs)

    def assemble_prefix(self, task: str, audio: np.ndarray | None, video: np.ndarray | None) -> np.ndarray:
        """[1, L, H]: token embeddings and projected tokens concatenated in the reference order."""
        prompt = self.tokenizer.encode(self.bundle.config["tokens"]["prompts"][task])
        slots = {"audio": audio, "video": video}
        pieces = [slots[s.modality] if s.modality else np.asarray(self.embeddings[list(s.ids)], np.float32)
                  for s in prefix_segments(task, self.ids, prompt) if s.modality or s.ids]
        return np.concatenate(pieces, axis=0)[None].astype(np.float32)

    def transcribe(self, audio: np.ndarray | None = None, frames: np.ndarray | None = None,
                   task: str | None = None, options: DecodingOptions | None = None) -> Transcript:
        """16 kHz mono `audio` and/or normalised 88x88 mouth `frames` [T, 88, 88] -> Transcript."""
        options = options or DecodingOptions()
        task = pick_task(self.tasks, audio is not None, frames is not None, task)
        timings: dict[str, float] = {}
        a, v, probs = self.encode(audio, frames, task, timings)
        prefix = self.assemble_prefix(task, a, v)
        llm = self.bundle.config["llm"]
        stepper = GraphStepper(self.sessions["decoder"], self.embeddings, prefix, llm["layers"], llm["kv_heads"],
                               llm["head_dim"])
        t0 = time.perf_counter()
        tokens = decode(stepper, {self.ids.eos}, options)
        timings["decoder"] = _ms(t0)
        return Transcript(self.tokenizer.decode(tokens), tokens, task, prefix.shape[1], timings,
                          {"router_probs": probs})


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)
