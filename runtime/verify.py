"""A bundle's self-test: sha256 of the manifest and every file, then its stored input through the bundle's
graphs, whose tokens must equal those the bundle produced at export (sherpa-onnx style: bundles test
themselves). Agreement with the torch reference is a separate figure: quantized weights may flip tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import load_bundle
from .decoding import DecodingOptions
from .errors import BundleError
from .manifest import FORMAT_BACKEND
from .recognizer import Recognizer


@dataclass
class SelfTestResult:
    bundle: str
    digest: str
    backend: str
    files: int
    passed: bool
    task: str
    text: str
    expected_text: str
    reference_text: str
    torch_agreement: float | None

    def to_dict(self) -> dict:
        return {"bundle": self.bundle, "manifest_sha256": self.digest, "backend": self.backend, "sha256": "ok",
                "self_test": "pass" if self.passed else "fail", "task": self.task, "text": self.text,
                "expected_text": self.expected_text, "reference_text": self.reference_text,
                "torch_agreement_at_export": self.torch_agreement}

    def describe(self) -> str:
        agree = "" if self.torch_agreement is None else f" (token agreement at export {self.torch_agreement:.2f})"
        return (f"sha256: ok ({self.files} files; manifest {self.digest})\n"
                f"self-test ({self.backend}, {self.task}): {'pass' if self.passed else 'FAIL'}\n"
                f"  now:       {self.text!r}\n  at export: {self.expected_text!r}\n"
                f"  torch:     {self.reference_text!r}{agree}")


def self_test(path: str | Path, backend: str | None = None, digest: str | None = None,
              device: str = "CPU") -> SelfTestResult:
    """Verify the files of bundle `path` (a BundleError if any differ, or if its manifest's sha256 is not a
    pinned `digest`) and rerun its self-test on `backend` (default: the one its format runs on) and `device`
    (OpenVINO: CPU, GPU, NPU)."""
    bundle = load_bundle(path, verify=True, digest=digest)
    backend = backend or FORMAT_BACKEND[bundle.manifest.format]
    test = bundle.manifest.self_test
    if test.reference_tokens is None:
        raise BundleError(f"{path} was exported without parity (a benchmark variant): it has no "
                          "self-test reference to verify against")
    rec = Recognizer.from_bundle(path, backend=backend, device=device)
    data = np.load(bundle.file(test.file))
    out = rec.transcribe(audio=data["audio"] if "audio" in data else None,
                         frames=data["frames"] if "frames" in data else None, task=test.task,
                         options=DecodingOptions(max_new_tokens=test.max_new_tokens))
    e2e = (bundle.manifest.parity or {}).get("end_to_end")  # free-form figures: shown only when well formed
    agreement = e2e.get("token_agreement") if isinstance(e2e, dict) else None
    agreement = float(agreement) if isinstance(agreement, (int, float)) and not isinstance(agreement, bool) else None
    return SelfTestResult(str(path), bundle.digest, backend, len(bundle.manifest.files),
                          out.tokens == test.expected_tokens, out.task, out.text,
                          test.bundle_text if test.bundle_text is not None else test.reference_text or "",
                          test.reference_text or "", agreement)


@dataclass
class Comparison:
    """One input through a converted bundle and through the bundle it came from."""

    name: str
    task: str
    tokens: list[int]
    source_tokens: list[int]
    text: str

    @property
    def equal(self) -> bool:
        return self.tokens == self.source_tokens


def compare_with_source(path: str | Path, source: str | Path, media_files: list[Path],
                        backend: str | None = None) -> list[Comparison]:
    """The run-check of a converted bundle (a mobile format): its self-test input and each media file (audio and
    the speaker's mouth crops, made once) through it and through `source`; the tokens should be equal."""
    from . import media
    from .transcribe import mouth_frames

    bundle, src = load_bundle(path), load_bundle(source)
    if bundle.config.to_dict() != src.config.to_dict():
        raise BundleError(f"{path} and {source} hold different models: nothing to compare")
    recs = [Recognizer.from_bundle(b.path, backend=backend or FORMAT_BACKEND[b.manifest.format]) for b in (bundle, src)]
    test = bundle.manifest.self_test
    data = np.load(bundle.file(test.file))
    inputs = [("self-test", data["audio"] if "audio" in data else None,
               data["frames"] if "frames" in data else None, test.task)]
    for file in media_files:
        info = media.probe(file)
        audio = media.read_audio(file, info.start) if info.has_audio else None
        frames = mouth_frames(file, False, audio, info.start)[0] if info.has_video else None
        task = next(t for t in ("avsr", "asr", "vsr") if t in bundle.config.tasks
                    and (audio is not None or t == "vsr") and (frames is not None or t == "asr"))
        inputs.append((Path(file).name, audio, frames, task))
    options = DecodingOptions(max_new_tokens=test.max_new_tokens)
    found = []
    for name, audio, frames, task in inputs:
        mine, theirs = (rec.transcribe(audio=audio, frames=frames if task != "asr" else None,
                                       task=task, options=options) for rec in recs)
        found.append(Comparison(name, task, mine.tokens, theirs.tokens, mine.text))
    return found
