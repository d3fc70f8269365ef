"""Reading an exported bundle: the typed manifest, and the sha256 of every file, checked before loading.

What the checks guarantee: every file the runtime opens is listed in the manifest with its sha256, is a
plain file inside the bundle directory (no symlinks, no paths), and matches its digest; the manifest
matches its own digest (`manifest.json.sha256`). That catches corruption and edits of any one file. It
cannot tell who made the bundle: whoever can write the directory can rewrite every digest. For that,
pin the manifest's digest (printed by `export` and `verify`) and pass it as `digest=` / `verify --digest`:
it covers every file's digest, so it fixes the whole bundle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig
from .errors import BundleError
from .manifest import MANIFEST, MANIFEST_DIGEST, Manifest, Stage


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

    @property
    def digest(self) -> str:
        """sha256 of `manifest.json`: one value that fixes every file of the bundle."""
        return sha256_file(self.path / MANIFEST)

    def file(self, name: str) -> Path:
        """The path of listed file `name`: the one place bundle paths are resolved, so nothing the
        runtime opens can lie outside the directory (a BundleError otherwise)."""
        if name not in self.manifest.files:
            raise BundleError(f"{self.path}: {name!r} is not listed in the manifest")
        path = self.path / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise BundleError(f"{self.path}: {name} is not a plain file inside the bundle")
        return path

    def stage_files(self, stage: str) -> list[Path]:
        """A (dynamic) stage's graph file and the listed files that go with it: external weights
        (`decoder.onnx.data`) or OpenVINO's `.bin`, i.e. every listed file named `<graph stem>.*`."""
        stem = Path(self.stages[stage].graph().file).stem
        return [self.file(n) for n in sorted(self.manifest.files) if n.startswith(stem + ".")]

    def verify_files(self) -> list[str]:
        """Names of listed files that are missing, not plain files, or whose sha256 differs."""
        bad = []
        for name, digest in self.manifest.files.items():
            path = self.path / name
            if path.is_symlink() or not path.is_file() or sha256_file(path) != digest:
                bad.append(name)
        return bad


def load_bundle(path: str | Path, verify: bool = True, digest: str | None = None) -> Bundle:
    """Open a bundle directory; with `verify`, refuse it unless the manifest matches its own digest and
    every file its sha256; with `digest`, unless the manifest's sha256 is that value."""
    path = Path(path)
    bundle = Bundle(path, Manifest.read(path))
    if verify or digest:
        recorded = path / MANIFEST_DIGEST
        actual = bundle.digest
        if not recorded.is_file() or recorded.is_symlink():
            raise BundleError(f"{path}: {MANIFEST_DIGEST} is missing (re-export the bundle)")
        if recorded.read_text().split()[:1] != [actual]:
            raise BundleError(f"{path}: {MANIFEST} was modified since export (its sha256 differs from "
                              f"{MANIFEST_DIGEST})")
        if digest and digest.lower() != actual:
            raise BundleError(f"{path}: the manifest's sha256 is {actual}, not the pinned {digest}")
        bad = bundle.verify_files()
        if bad:
            raise BundleError(f"{path}: file(s) missing or modified since export (sha256 mismatch): {', '.join(bad)}")
    return bundle
