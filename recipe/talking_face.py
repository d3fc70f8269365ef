"""A small talking-face renderer: phone timings -> a mouth opening / rounding track -> a smooth warp of
a real photo's jaw and lips (cv2.remap) with a dark mouth cavity -> frames at 25 fps (docs/design.md §5).

Good for pipeline tests and for the synthetic demo corpus; not a lip-reading benchmark. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smop_edge.runtime.features import VIDEO_FPS

# (opening 0..1, rounding 0..1) per ARPAbet phone (flite / festival names); unknown phones: mid
VISEMES: dict[str, tuple[float, float]] = {
    "pau": (0.0, 0.0), "sil": (0.0, 0.0), "h#": (0.0, 0.0),
    "p": (0.0, 0.0), "b": (0.0, 0.0), "m": (0.0, 0.0),
    "f": (0.12, 0.0), "v": (0.12, 0.0), "w": (0.2, 0.9), "r": (0.3, 0.5),
    "aa": (1.0, 0.0), "ae": (0.85, 0.0), "ah": (0.7, 0.0), "ao": (0.8, 0.5), "aw": (0.85, 0.3),
    "ax": (0.5, 0.0), "ay": (0.85, 0.0), "eh": (0.6, 0.0), "er": (0.4, 0.4), "ey": (0.5, 0.0),
    "ih": (0.4, 0.0), "iy": (0.3, 0.0), "ow": (0.6, 0.8), "oy": (0.6, 0.6), "uh": (0.4, 0.6), "uw": (0.3, 1.0),
    "y": (0.25, 0.0), "l": (0.35, 0.0), "th": (0.25, 0.0), "dh": (0.25, 0.0),
}
DEFAULT_VISEME = (0.3, 0.0)


def viseme_track(phones: list[tuple[str, float]], n_frames: int, fps: int = VIDEO_FPS,
                 smoothing: float = 0.04) -> np.ndarray:
    """[(phone, end time in s), ...] -> [n_frames, 2] (opening, rounding) at `fps`: each phone's target
    held at its midpoint, linear in between, then Gaussian-smoothed (coarticulation, `smoothing` s)."""
    times, targets, start = [], [], 0.0
    for phone, end in phones:
        times.append((start + end) / 2)
        targets.append(VISEMES.get(phone.lower(), DEFAULT_VISEME))
        start = end
    t = np.arange(n_frames) / fps
    if not times:
        return np.zeros((n_frames, 2), np.float32)
    track = np.stack([np.interp(t, times, [v[i] for v in targets]) for i in (0, 1)], axis=1)
    sigma = smoothing * fps
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(track, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in (0, 1)], axis=1).astype(np.float32)


def parse_psdur(text: str) -> list[tuple[str, float]]:
    """flite's `-psdur` output ('pau:0.220 s:0.355 ...') -> [(phone, end time), ...]."""
    out = []
    for item in text.split():
        phone, _, end = item.rpartition(":")
        try:
            out.append((phone, float(end)))
        except ValueError:
            continue
    return out


@dataclass
class FaceRig:
    """Where the mouth and eyes are in a photo (pixels): lip corners, lip midpoints, chin, and per eye
    the upper and lower lid midpoints and the corners."""

    left: np.ndarray
    right: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    chin: np.ndarray
    eyes: np.ndarray | None = None  # [2 eyes, 4 (upper lid, lower lid, corner, corner), 2]

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.right - self.left))

    @property
    def centre(self) -> np.ndarray:
        return (self.left + self.right + self.upper + self.lower) / 4

    def to_json(self) -> dict[str, list]:
        """The rig as plain lists (float32 values, which JSON writes and reads back exactly)."""
        return {name: value.tolist() for name, value in vars(self).items() if value is not None}

    @classmethod
    def from_json(cls, fields: dict[str, list]) -> "FaceRig":
        return cls(**{name: np.asarray(value, np.float32) for name, value in fields.items()})

    @classmethod
    def from_photo(cls, photo: np.ndarray) -> "FaceRig":
        """The rig the lip cropper's face mesh finds in `photo`."""
        from smop_edge.runtime.lip_cropper import FaceMeshDetector

        detector = FaceMeshDetector(max_faces=1)
        faces = detector(photo)
        detector.close()
        if not faces:
            raise ValueError("no face found in the photo")
        m = faces[0]
        eyes = np.stack([m[[159, 145, 33, 133]], m[[386, 374, 362, 263]]])
        return cls(m[61], m[291], (m[13] + m[0]) / 2, (m[14] + m[17]) / 2, m[152], eyes)


def _box(photo: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
    h, w = photo.shape[:2]
    return (slice(max(0, int(y0)), min(h, int(np.ceil(y1)))), slice(max(0, int(x0)), min(w, int(np.ceil(x1)))))


def render_frame(photo: np.ndarray, rig: FaceRig, opening: float, rounding: float, blink: float = 0.0
                 ) -> np.ndarray:
    """The photo with the jaw dropped by `opening` (0..1, 1 = about 0.45 mouth widths), lips pursed by
    `rounding`, the cavity between the lips darkened, and the eyes closed by `blink` (0..1). Only the
    region around the mouth (and eyes) is warped."""
    import cv2

    c, width = rig.centre, rig.width
    frame = photo.copy()
    ys, xs = _box(photo, c[0] - 2.7 * width, c[0] + 2.7 * width, c[1] - 0.8 * width, rig.chin[1] + 0.9 * width)
    yy, xx = np.mgrid[ys, xs].astype(np.float32)
    drop = 0.45 * width * opening
    # lower lip and jaw move down: full below the mouth line, fading over the chin and sideways
    below = np.clip((yy - (c[1] - 0.05 * width)) / (0.15 * width), 0, 1)
    fade_x = np.exp(-0.5 * ((xx - c[0]) / (0.9 * width)) ** 2)
    fade_y = np.clip(1 - (yy - rig.chin[1]) / (0.8 * width), 0, 1)
    dy = drop * below * fade_x * fade_y
    dy -= 0.12 * drop * np.clip(((c[1] - yy) / (0.1 * width)), 0, 1) * fade_x * np.exp(
        -0.5 * ((yy - c[1]) / (0.3 * width)) ** 2)  # upper lip lifts a little
    # rounding pulls the corners in
    near = np.exp(-0.5 * (((xx - c[0]) / (0.6 * width)) ** 2 + ((yy - c[1]) / (0.35 * width)) ** 2))
    dx = -0.18 * rounding * (xx - c[0]) * near
    frame[ys, xs] = cv2.remap(photo, xx - dx, yy - dy, interpolation=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    if opening > 0.02:  # the cavity: an ellipse between the moved lips
        gap = drop * 0.9
        centre = (int(c[0]) - xs.start, int(c[1] + gap / 2) - ys.start)
        axes = (max(1, int(width * (0.42 - 0.15 * rounding))), max(1, int(gap / 2)))
        mask = np.zeros(yy.shape, np.float32)
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, width * 0.03))[..., None]
        cavity = np.array([60, 20, 25], np.float32)
        frame[ys, xs] = (frame[ys, xs] * (1 - 0.85 * mask) + cavity * 0.85 * mask).astype(np.uint8)
    if blink > 0.02 and rig.eyes is not None:
        for upper, lower, a, b in rig.eyes:
            frame = _close_eye(frame, upper, lower, a, b, blink)
    return frame


def _close_eye(frame: np.ndarray, upper: np.ndarray, lower: np.ndarray, a: np.ndarray, b: np.ndarray,
               amount: float) -> np.ndarray:
    """Pull the upper lid (and the skin above it) down onto the lower lid by `amount`."""
    import cv2

    size = float(np.linalg.norm(b - a))
    centre = (a + b) / 2
    ys, xs = _box(frame, centre[0] - size, centre[0] + size, upper[1] - 1.2 * size, lower[1] + 0.3 * size)
    yy, xx = np.mgrid[ys, xs].astype(np.float32)
    gap = amount * max(float(lower[1] - upper[1]), 0.15 * size)
    weight = np.exp(-0.5 * ((xx - centre[0]) / (0.45 * size)) ** 2)
    # full shift down to the lid line, fading out above the brow and below the lower lid
    above = np.clip((yy - (upper[1] - 1.0 * size)) / (0.8 * size), 0, 1)
    below = np.clip((lower[1] + 0.2 * size - yy) / (0.2 * size), 0, 1)
    dy = gap * weight * above * below
    out = frame.copy()
    out[ys, xs] = cv2.remap(frame, xx, yy - dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def render(photo: np.ndarray, track: np.ndarray, rig: FaceRig | None = None) -> list[np.ndarray]:
    """Frames for a [T, 2] (opening, rounding) track."""
    rig = rig or FaceRig.from_photo(photo)
    return [render_frame(photo, rig, float(o), float(r)) for o, r in track]
