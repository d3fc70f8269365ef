"""A bundle's self-test: sha256 of every file, then its stored input through the bundle's graphs, whose
tokens must equal those the torch reference produced at export (sherpa-onnx style: bundles test themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import load_bundle
from .decoding import DecodingOptions
from .errors import BundleError
from .recognizer import Recognizer


@dataclass
class SelfTestResult:
    bundle: str
    backend: str
    files: int
    passed: bool
    task: str
    text: str
    reference_text: str

    def to_dict(self) -> dict:
        return {"bundle": self.bundle, "backend": self.backend, "sha256": "ok",
                "self_test": "pass" if self.passed else "fail", "task": self.task, "text": self.text,
                "reference_text": self.reference_text}

    def describe(self) -> str:
        return (f"sha256: ok ({self.files} files)\nself-test ({self.backend}, {self.task}): "
                f"{'pass' if self.passed else 'FAIL'}\n  bundle:    {self.text!r}\n  reference: {self.reference_text!r}")


def self_test(path: str | Path, backend: str | None = None) -> SelfTestResult:
    """Verify the files of bundle `path` (a BundleError if any differ) and rerun its self-test on
    `backend` (default: the one its format runs on)."""
    bundle = load_bundle(path, verify=True)
    backend = backend or ("onnxruntime" if bundle.manifest.format == "onnx" else "openvino")
    test = bundle.manifest.self_test
    if test.reference_tokens is None:
        raise BundleError(f"{path} was exported without parity (a benchmark variant): it has no "
                          "self-test reference to verify against")
    rec = Recognizer.from_bundle(path, backend=backend)
    data = np.load(bundle.file(test.file))
    out = rec.transcribe(audio=data["audio"] if "audio" in data else None,
                         frames=data["frames"] if "frames" in data else None, task=test.task,
                         options=DecodingOptions(max_new_tokens=test.max_new_tokens))
    return SelfTestResult(str(path), backend, len(bundle.manifest.files), out.tokens == test.reference_tokens,
                          out.task, out.text, test.reference_text or "")
