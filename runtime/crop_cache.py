"""Mouth crops cached on disk, so that evaluation at several noise levels and training epochs crop
each video once. A cache entry is keyed by the file's path, size and modification time, and the cropper's
version (crops from another cropper are never mixed in)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import media


CROPPER_VERSION = 2  # 2: mediapipe's models run by OpenVINO with landmark tracking (1: mediapipe's own graphs)


def _key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:cropper{CROPPER_VERSION}".encode()).hexdigest()[:20]


def beside(manifest: str | Path) -> Path:
    """The default cache of a manifest's clips: `crops/` next to it (training and eval share it)."""
    return Path(manifest).parent / "crops"


def mouth_rois(path: str | Path, cache_dir: str | Path | None = None) -> tuple[np.ndarray, int]:
    """96x96 RGB mouth ROIs [T, 96, 96, 3] uint8 of a video (the speaker chosen with its audio) and the
    number of frames where the face was found; read from `cache_dir` when cropped before."""
    from .lip_cropper import crop_mouths_with_transforms

    path = Path(path)
    entry = Path(cache_dir) / f"{_key(path)}.npz" if cache_dir else None
    if entry is not None and entry.exists():
        with np.load(entry) as data:
            return data["rois"], int(data["found"])
    audio = media.read_audio(path) if media.probe(path).has_audio else None
    rois, found, _ = crop_mouths_with_transforms(lambda: media.iter_video(path), audio)
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, rois=rois, found=found)
        tmp.replace(entry)
    return rois, found
