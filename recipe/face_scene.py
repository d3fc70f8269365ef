"""Talking-face clips for the synthetic corpus: face identities made from clearly licensed photos
(mirrored, stretched, skin tone), and per-clip scenes (head motion, blinks, scale, lighting, sensor
noise) around the mouth renderer of `recipe.talking_face`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .talking_face import FaceRig, render_frame


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


# Public-domain portraits that ship inside installed packages: NASA's astronaut Eileen Collins
# (scikit-image) and the US Navy portrait of Grace Hopper (matplotlib's sample data).
PHOTOS = {"astronaut": _astronaut, "hopper": _grace_hopper}


@dataclass(frozen=True)
class FaceIdentity:
    """A face: a photo, optionally mirrored, stretched (face shape) and re-toned (per-channel gains)."""

    photo: str
    mirror: bool = False
    stretch_x: float = 1.0
    stretch_y: float = 1.0
    tone: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def id(self) -> str:
        parts = [self.photo + ("-mirror" if self.mirror else ""), f"{self.stretch_x:.2f}", f"{self.stretch_y:.2f}"]
        return "_".join(parts + [f"{g:.2f}" for g in self.tone])

    @classmethod
    def sample(cls, rng: np.random.Generator, photo: str) -> "FaceIdentity":
        return cls(photo, bool(rng.random() < 0.5), round(float(rng.uniform(0.86, 1.14)), 2),
                   round(float(rng.uniform(0.92, 1.08)), 2),
                   tuple(round(float(g), 2) for g in rng.uniform(0.8, 1.15, 3)))


SPLIT_SEEDS = {"train": 1000, "test": 2000, "sealed": 3000}


def identities(split: str, n: int = 6) -> list[FaceIdentity]:
    """`n` identities per photo for `split` (train / test / sealed); the splits draw from different seeds,
    so their faces differ in mirroring, shape and tone (they share the two photos: see docs/demo-model.md)."""
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    return [FaceIdentity.sample(rng, photo) for _ in range(n) for photo in PHOTOS]


def identity_photo(identity: FaceIdentity) -> np.ndarray:
    """The identity's photo: mirrored, resized by its stretch, re-toned."""
    import cv2

    photo = PHOTOS[identity.photo]()
    if identity.mirror:
        photo = photo[:, ::-1]
    h, w = photo.shape[:2]
    photo = cv2.resize(np.ascontiguousarray(photo), (round(w * identity.stretch_x), round(h * identity.stretch_y)),
                       interpolation=cv2.INTER_AREA)
    return np.clip(photo * np.asarray(identity.tone, np.float32), 0, 255).astype(np.uint8)


# Every split's rigs, found once by the face mesh and frozen here, so that work on the lip cropper never moves
# the corpus's video (it did once: docs/demo-model.md, "The corpus's video changed with the lip cropper").
RIGS = Path(__file__).with_name("face_rigs.json")


@functools.cache
def frozen_rigs() -> dict[str, FaceRig]:
    """Identity id -> its rig, as `RIGS` holds them."""
    return {key: FaceRig.from_json(fields) for key, fields in json.loads(RIGS.read_text()).items()}


def freeze_rigs() -> dict[str, FaceRig]:
    """Every split's identities' rigs as the face mesh finds them now (what `RIGS` was written from)."""
    return {i.id: FaceRig.from_photo(identity_photo(i)) for split in SPLIT_SEEDS for i in identities(split)}


@functools.lru_cache(maxsize=32)
def face(identity: FaceIdentity) -> tuple[np.ndarray, FaceRig]:
    """The identity's photo and its frozen rig."""
    rig = frozen_rigs().get(identity.id)
    if rig is None:
        raise KeyError(f"no frozen rig for face {identity.id}: rewrite {RIGS.name} with "
                       "`python -m smop_edge.recipe.face_scene` (this changes the corpus's video)")
    return identity_photo(identity), rig


def _smooth_walk(rng: np.random.Generator, n: int, scale: float, seconds: float = 1.0) -> np.ndarray:
    """A slow random motion of n frames with about `scale` standard deviation."""
    radius = max(1, int(seconds * 25))
    raw = rng.standard_normal(n + 2 * radius)
    kernel = np.hanning(2 * radius + 1)
    walk = np.convolve(raw, kernel / kernel.sum(), mode="valid")[:n]
    return walk / (walk.std() + 1e-9) * scale if n > 1 else walk * 0


@dataclass
class Scene:
    """How one clip is filmed: canvas size, mouth width in pixels, head motion (rotation degrees,
    translation as a fraction of the canvas, relative scale), blink times, lighting and sensor noise."""

    size: tuple[int, int]
    mouth_px: float
    motion: np.ndarray  # [T, 4]: angle, dx, dy, scale
    blinks: np.ndarray  # [T] eye closure 0..1
    gain: float
    gradient: tuple[float, float]  # brightness slope across the canvas (x, y), relative
    cast: tuple[float, float, float]
    noise: float

    @classmethod
    def sample(cls, rng: np.random.Generator, n_frames: int) -> "Scene":
        size = [(360, 360), (320, 400), (400, 320), (448, 336)][rng.integers(4)]
        motion = np.stack([_smooth_walk(rng, n_frames, 2.5), _smooth_walk(rng, n_frames, 0.015),
                           _smooth_walk(rng, n_frames, 0.015), _smooth_walk(rng, n_frames, 0.025)], axis=1)
        blinks = np.zeros(n_frames, np.float32)
        t = rng.uniform(0, 60)
        while t < n_frames:
            for k, v in enumerate([0.5, 1.0, 1.0, 0.6, 0.2]):
                if int(t) + k < n_frames:
                    blinks[int(t) + k] = v
            t += rng.uniform(40, 120)  # every 1.6 to 4.8 s
        return cls(size, float(rng.uniform(32, 64)), motion.astype(np.float32), blinks,
                   float(rng.uniform(0.55, 1.25)), (float(rng.uniform(-0.4, 0.4)), float(rng.uniform(-0.2, 0.2))),
                   tuple(float(c) for c in rng.uniform(0.9, 1.1, 3)), float(rng.choice([0.0, 0.0, 2.0, 4.0])))


def render_clip(identity: FaceIdentity, track: np.ndarray, scene: Scene,
                rng: np.random.Generator) -> Iterator[np.ndarray]:
    """RGB frames [H, W, 3] for an (opening, rounding) track [T, 2], filmed as `scene` describes."""
    import cv2

    photo, rig = face(identity)
    w, h = scene.size
    ramp_x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ramp_y = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    light = (scene.gain * (1 + scene.gradient[0] * ramp_x + scene.gradient[1] * ramp_y))[..., None]
    light = light * np.asarray(scene.cast, np.float32)
    # the face centre (between eyes and mouth) goes to the canvas centre
    anchor = rig.centre if rig.eyes is None else (rig.centre + rig.eyes[:, 2:].mean((0, 1))) / 2
    base_scale = scene.mouth_px / rig.width
    for t, (opening, rounding) in enumerate(track):
        angle, dx, dy, ds = scene.motion[t]
        frame = render_frame(photo, rig, float(opening), float(rounding), float(scene.blinks[t]))
        m = cv2.getRotationMatrix2D((float(anchor[0]), float(anchor[1])), float(angle), base_scale * (1 + float(ds)))
        m[:, 2] += np.array([w / 2 + dx * w, h / 2 + dy * h]) - anchor
        out = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = out.astype(np.float32) * light
        if scene.noise:
            out += rng.normal(0, scene.noise, out.shape).astype(np.float32)
        yield np.clip(out, 0, 255).astype(np.uint8)


if __name__ == "__main__":
    rows = [f"{json.dumps(key)}: {json.dumps(rig.to_json())}" for key, rig in freeze_rigs().items()]
    RIGS.write_text("{\n" + ",\n".join(rows) + "\n}\n")  # a face a line
    print(f"wrote {RIGS}")
