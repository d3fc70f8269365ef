"""Reading an exported bundle: the typed manifest, and the sha256 of every file, checked before loading."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig
from .errors import BundleError
from .manifest import Manifest, Stage


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Bundle:
    """A bundle directory and its manifest (see docs/design.md §2)."""

    path: Path
    manifest: Manifest

    @property
    def config(self) -> ModelConfig:
        return self.manifest.model

    @property
    def stages(self) -> dict[str, Stage]:
        return self.manifest.stages

    def file(self, name: str) -> Path:
        return self.path / name

    def stage_files(self, stage: str) -> list[Path]:
        """A (dynamic) stage's graph file and the files that go with it: external weights
        (`decoder.onnx.data`) or OpenVINO's `.bin`, i.e. every file named `<graph stem>.*`."""
        stem = Path(self.stages[stage].graph().file).stem
        return sorted(p for p in self.path.iterdir() if p.is_file() and p.name.startswith(stem + "."))

    def verify_files(self) -> list[str]:
        """Names of files whose sha256 differs from the manifest's or that are missing."""
        bad = []
        for name, digest in self.manifest.files.items():
            path = self.path / name
            if not path.is_file() or sha256_file(path) != digest:
                bad.append(name)
        return bad


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle directory; with `verify`, refuse it unless every file's sha256 matches."""
    path = Path(path)
    bundle = Bundle(path, Manifest.read(path))
    if verify:
        bad = bundle.verify_files()
        if bad:
            raise BundleError(f"{path}: file(s) missing or modified since export (sha256 mismatch): {', '.join(bad)}")
    return bundle
