"""The bundle manifest, typed: written by `smop-edge export`, read by the runtime, `verify`, `eval` and
`bench`. One versioned header in one place (as llama2.c's export header); `manifest.json` is its JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import features, lips
from .config import ModelConfig
from .errors import BundleError, UsageError
from .typed import FieldError, from_data

MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.json.sha256"  # the manifest's own sha256, written beside it
SCHEMA_VERSION = 1
STAGES = ("audio_encoder", "video_encoder", "projector", "decoder")
# ort: ONNX Runtime Mobile's format (export.mobile); litert: .tflite; executorch: .pte (export.executorch)
FORMATS = ("onnx", "openvino", "ort", "litert", "executorch")
# the backend that runs each format by default, and the formats each backend reads
FORMAT_BACKEND = {"onnx": "onnxruntime", "ort": "onnxruntime", "openvino": "openvino", "litert": "litert",
                  "executorch": "executorch"}
BACKEND_FORMATS = {"onnxruntime": ("onnx", "ort"), "openvino": ("openvino", "onnx"), "litert": ("litert",),
                   "executorch": ("executorch",)}
AUDIO_MODES = ("faithful", "fast")


def resolve_backend(backend: str, fmt: str) -> str:
    """`auto`: the engine measured fastest for a bundle of format `fmt` on this machine: OpenVINO for ONNX
    graphs on x86-64 where it is installed (the demo model's 10 s AVSR in 164 ms against ONNX Runtime's
    247, the same tokens; docs/benchmarks.md), else the format's own engine (ONNX Runtime on ARM, where
    OpenVINO was not measured). Any other name is returned as it is."""
    if backend != "auto":
        return backend
    if fmt == "onnx" and platform.machine().lower() in ("x86_64", "amd64") and importlib.util.find_spec("openvino"):
        return "openvino"
    return FORMAT_BACKEND[fmt]

@dataclass
class TensorSpec:
    """One graph input or output: dimensions are sizes or symbolic names."""

    name: str
    shape: list[int | str]
    dtype: str


@dataclass
class Graph:
    """One graph file (OpenVINO's `.xml` beside its `.bin`; ONNX maybe beside `.onnx.data`)."""

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass
class BucketGraph(Graph):
    """A static-shape graph for inputs up to `size` frames."""

    size: int = 0


@dataclass
class Stage:
    """A pipeline stage: one dynamic graph, or (static bundles' encoders) one graph per length bucket."""

    quantization: str | dict[str, str]
    file: str | None = None
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    buckets: list[BucketGraph] | None = None
    input_widths: dict[str, int] | None = None  # projector: token width per modality
    weights_sha256: str | None = None  # of the tensors the graph was built from (export.stages.weights_digest)

    def graph(self, bucket: int | None = None) -> Graph:
        """The stage's graph, or its graph for length bucket `bucket`."""
        if bucket is None:
            if self.file is None:
                raise BundleError("stage has length buckets only: a bucket size is needed")
            return Graph(self.file, self.inputs, self.outputs)
        for b in self.buckets or []:
            if b.size == bucket:
                return b
        raise BundleError(f"no graph for bucket {bucket}")

    def files(self) -> list[str]:
        return [self.file] if self.file else [b.file for b in self.buckets or []]


@dataclass
class TokenizerEntry:
    file: str
    special_ids: dict[str, int]
    prompts: dict[str, str]


@dataclass
class Preprocessing:
    """How media become model inputs: a record of the constants in `features` and `lips` at export,
    checked against them when a bundle is opened (a bundle made for other constants is refused)."""

    pad_to_30s: bool
    mel_bins: int | None
    sample_rate: int = features.SAMPLE_RATE
    n_fft: int = features.N_FFT
    hop_length: int = features.HOP_LENGTH
    normalize_eps: float = features.NORMALIZE_EPS
    video_fps: int = features.VIDEO_FPS
    samples_per_video_frame: int = features.SAMPLES_PER_VIDEO_FRAME
    mouth_roi: int = lips.ROI_SIZE
    mouth_crop: int = lips.CROP_SIZE
    pixel_mean: float = lips.PIXEL_MEAN
    pixel_std: float = lips.PIXEL_STD


@dataclass
class Embeddings:
    """The LLM's token embedding table, looked up in numpy (`.npy`, memory-mapped)."""

    file: str
    dtype: str
    shape: list[int]


@dataclass
class Quantization:
    experts: str
    router: str
    layer_norm: str
    llm: str
    encoders: str
    activations: dict[str, str]


@dataclass
class SelfTest:
    """A stored input, the bundle's own tokens for it at export (what `verify` must reproduce) and the
    torch reference's (agreement with torch is a parity figure); absent when exported without parity."""

    file: str
    task: str
    max_new_tokens: int
    reference_tokens: list[int] | None = None
    reference_text: str | None = None
    bundle_tokens: list[int] | None = None  # None in bundles made before they were recorded: the reference's
    bundle_text: str | None = None

    @property
    def expected_tokens(self) -> list[int] | None:
        return self.bundle_tokens if self.bundle_tokens is not None else self.reference_tokens


@dataclass
class StaticShapes:
    """Static (NPU) bundles: encoder length buckets, projector and decoder chunks, KV capacity."""

    audio_buckets: list[int]
    video_buckets: list[int]
    projector_chunk: int
    decoder_chunk: int
    kv_capacity: int


@dataclass
class Manifest:
    """Everything a bundle directory holds and how to run it; `files` maps each file to its sha256."""

    schema_version: int
    created_by: dict[str, str]
    source: dict[str, Any]
    format: str
    audio_mode: str
    model: ModelConfig
    tokenizer: TokenizerEntry
    preprocessing: Preprocessing
    stages: dict[str, Stage]
    embeddings: Embeddings
    quantization: Quantization
    self_test: SelfTest
    static: StaticShapes | None = None
    parity: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name, stage in data["stages"].items():  # a stage lists only the fields it uses
            data["stages"][name] = {k: v for k, v in stage.items() if v is not None and v != []}
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> "Manifest":
        """Parse and check a manifest; any missing, unknown or mistyped field is a BundleError."""
        if not isinstance(data, dict):
            raise BundleError(f"{where}: not a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(f"{where}: unsupported bundle schema {version!r} "
                              f"(this smop-edge reads version {SCHEMA_VERSION})")
        try:
            manifest = from_data(cls, data, "manifest")
        except FieldError as exc:
            raise BundleError(f"{where}: invalid manifest: {exc}") from None
        manifest.check(where)
        return manifest

    def check(self, where: str) -> None:
        """Values the types cannot express: known format, mode and stages; every file named is listed and
        lies inside the bundle directory; the preprocessing constants are this toolkit's."""
        if self.format not in FORMATS:
            raise BundleError(f"{where}: unknown format {self.format!r}")
        try:
            self.model.validate()
        except UsageError as exc:
            raise BundleError(f"{where}: {exc}") from None
        if self.audio_mode not in AUDIO_MODES:
            raise BundleError(f"{where}: unknown audio mode {self.audio_mode!r}")
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise BundleError(f"{where}: unknown stage(s) {', '.join(unknown)}")
        modalities = [m for m in ("audio", "video") if getattr(self.model, f"has_{m}")]
        missing = [s for s in ["projector", "decoder"] + [f"{m}_encoder" for m in modalities] if s not in self.stages]
        if missing:
            raise BundleError(f"{where}: the model needs stage(s) {', '.join(missing)}, which the manifest lacks")
        widths = {m: self.model.projector_input_dim(m) for m in modalities}
        if self.stages["projector"].input_widths != widths:
            raise BundleError(f"{where}: the projector's input widths {self.stages['projector'].input_widths} "
                              f"are not the model's {widths}")
        if self.embeddings.shape != [self.model.llm.vocab, self.model.llm.hidden]:
            raise BundleError(f"{where}: the token embeddings are {self.embeddings.shape}, the model needs "
                              f"{[self.model.llm.vocab, self.model.llm.hidden]}")
        if self.self_test.task not in self.model.tasks:
            raise BundleError(f"{where}: the self-test's task {self.self_test.task!r} is not one of the model's")
        counts = {"self_test.max_new_tokens": [self.self_test.max_new_tokens]}
        if self.static is not None:
            counts.update({f"static.{k}": v if isinstance(v, list) else [v] for k, v in vars(self.static).items()})
        low = [name for name, values in counts.items() if not values or min(values) < 1]
        if low:
            raise BundleError(f"{where}: {', '.join(low)} must be at least 1")
        named = [f for s in self.stages.values() for f in s.files()]
        named += [self.tokenizer.file, self.embeddings.file, self.self_test.file]
        unlisted = sorted(set(named) - set(self.files))
        if unlisted:
            raise BundleError(f"{where}: file(s) not listed with a sha256: {', '.join(unlisted)}")
        outside = sorted(name for name in self.files if Path(name).name != name or name in ("", ".", ".."))
        if outside:
            raise BundleError(f"{where}: the manifest names files outside the bundle directory: {', '.join(outside)}")
        expected = Preprocessing(self.preprocessing.pad_to_30s, self.preprocessing.mel_bins)
        if self.preprocessing != expected:
            raise BundleError(f"{where}: the bundle was made for other preprocessing constants than this smop-edge's "
                              f"({self.preprocessing} vs {expected})")

    @classmethod
    def read(cls, bundle_dir: Path) -> "Manifest":
        path = Path(bundle_dir) / MANIFEST
        if not path.is_file():
            raise BundleError(f"not a smop-edge bundle (no {MANIFEST}): {bundle_dir}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"corrupt {MANIFEST} in {bundle_dir}: {exc}") from None
        return cls.from_dict(data, str(bundle_dir))

    def write(self, bundle_dir: Path, digests: dict[str, str]) -> str:
        """Write `manifest.json` with `digests` (file name -> sha256) as its file list, and its own sha256
        beside it (`manifest.json.sha256`); returns that digest."""
        self.files = dict(digests)
        text = json.dumps(self.to_dict(), indent=2).encode()
        (Path(bundle_dir) / MANIFEST).write_bytes(text)
        digest = hashlib.sha256(text).hexdigest()
        (Path(bundle_dir) / MANIFEST_DIGEST).write_text(f"{digest}  {MANIFEST}\n")
        return digest
