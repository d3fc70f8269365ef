"""Lip-cropping speed per 720p frame, offline (`transcribe`'s two passes over the file) and live (one
`LiveLipCropper.push` per frame), on one core: two public-domain portraits (scikit-image's astronaut,
matplotlib's Grace Hopper) pasted into 1280 x 720 frames, large (the photo 600 px tall) and small (150 px: a
face about 60 px wide), drifting a few pixels, 10 s at 25 fps, written to mp4 first.

    taskset -c 0 .venv/bin/python scripts/crop_bench.py [--seconds 10]

Frames are decoded first (decoding is timed alone: `transcribe` does it anyway), so the figures are the
cropper's own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from smop_edge.recipe.face_scene import PHOTOS
from smop_edge.runtime import media
from smop_edge.runtime.lip_cropper import FaceMeshDetector, LiveLipCropper, crop_mouths_with_transforms


def clip(photo: np.ndarray, height: int, frames: int) -> list[np.ndarray]:
    """The photo scaled to `height`, pasted into a grey 720p frame, drifting by up to 3 px."""
    w = round(photo.shape[1] * height / photo.shape[0])
    img = cv2.resize(photo, (w, height), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(frames):
        frame = np.full((720, 1280, 3), 40, np.uint8)
        m = np.float32([[1, 0, 300 + 3 * np.sin(i / 5)], [0, 1, 60 + 2 * np.cos(i / 7)]])
        cv2.warpAffine(img, m, (1280, 720), dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
        out.append(frame)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    n = int(args.seconds * 25)
    print(f"{'clip':<22} {'found':>7} {'offline ms/frame':>17} {'live mean':>10} {'live p90':>9} {'decode':>7} {'start-up ms':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, photo in ((k, load()) for k, load in PHOTOS.items()):
            for size, height in (("large", 600), ("small", 200)):
                frames = clip(photo, height, n)
                path = media.write_video(Path(tmp) / f"{name}-{size}.mp4", frames)
                t0 = time.perf_counter()
                decoded = list(media.iter_video(path))
                decode = time.perf_counter() - t0
                t0 = time.perf_counter()
                detector = FaceMeshDetector()
                start = time.perf_counter() - t0
                t0 = time.perf_counter()
                _, found, _ = crop_mouths_with_transforms(lambda: iter(decoded), detector=detector)
                offline = (time.perf_counter() - t0) / len(decoded)
                live, per_frame = LiveLipCropper(), []
                for frame in decoded:
                    t0 = time.perf_counter()
                    live.push(frame)
                    per_frame.append(time.perf_counter() - t0)
                live.close()
                ms = np.array(per_frame) * 1000
                print(f"{name + ' ' + size:<22} {found:>3}/{len(decoded):<3} {offline * 1000:>17.1f} {ms.mean():>10.1f} "
                      f"{np.percentile(ms, 90):>9.1f} {decode / len(decoded) * 1000:>7.1f} {start * 1000:>12.0f}")


if __name__ == "__main__":
    main()
