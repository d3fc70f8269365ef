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


def self_test(path: str | Path, backend: str | None = None, digest: str | None = None) -> SelfTestResult:
    """Verify the files of bundle `path` (a BundleError if any differ, or if its manifest's sha256 is not a
    pinned `digest`) and rerun its self-test on `backend` (default: the one its format runs on)."""
    bundle = load_bundle(path, verify=True, digest=digest)
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
    e2e = (bundle.manifest.parity or {}).get("end_to_end")  # free-form figures: shown only when well formed
    agreement = e2e.get("token_agreement") if isinstance(e2e, dict) else None
    agreement = float(agreement) if isinstance(agreement, (int, float)) and not isinstance(agreement, bool) else None
    return SelfTestResult(str(path), bundle.digest, backend, len(bundle.manifest.files),
                          out.tokens == test.expected_tokens, out.task, out.text,
                          test.bundle_text if test.bundle_text is not None else test.reference_text or "",
                          test.reference_text or "", agreement)
