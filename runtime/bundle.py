"""Reading an exported bundle: the manifest, and the sha256 of every file, checked before loading."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
STAGES = ("audio_encoder", "video_encoder", "projector", "decoder")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Bundle:
    """A bundle directory and its manifest (a plain dict, see DESIGN §2)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["model"]

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.manifest["stages"]

    def file(self, name: str) -> Path:
        return self.path / name

    def stage_files(self, stage: str) -> list[Path]:
        """A (dynamic) stage's graph file and the files that go with it: external weights
        (`decoder.onnx.data`) or OpenVINO's `.bin`, i.e. every file named `<graph stem>.*`."""
        stem = Path(self.stages[stage]["file"]).stem
        return sorted(p for p in self.path.iterdir() if p.is_file() and p.name.startswith(stem + "."))

    def verify_files(self) -> list[str]:
        """Names of files whose sha256 differs from the manifest's or that are missing."""
        bad = []
        for name, digest in self.manifest.get("files", {}).items():
            path = self.path / name
            if not path.is_file() or sha256_file(path) != digest:
                bad.append(name)
        return bad


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle directory; with `verify`, refuse it unless every file's sha256 matches."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"not a smop-edge bundle (no {MANIFEST}): {path}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"corrupt {MANIFEST} in {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{path}: unsupported bundle schema {manifest.get('schema_version') if isinstance(manifest, dict) else None}"
                          f" (this smop-edge reads version {SCHEMA_VERSION})")
    for key in ("model", "stages", "files", "tokenizer"):
        if key not in manifest:
            raise BundleError(f"{path}: manifest lacks {key!r}")
    bundle = Bundle(path, manifest)
    if verify:
        bad = bundle.verify_files()
        if bad:
            raise BundleError(f"{path}: file(s) missing or modified since export (sha256 mismatch): {', '.join(bad)}")
    return bundle
