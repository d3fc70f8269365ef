"""Mouth crops: from 96x96 mouth ROIs to the encoder's normalised 88x88 input (docs/design.md §1)."""

from __future__ import annotations

import numpy as np

ROI_SIZE = 96
CROP_SIZE = 88
PIXEL_MEAN, PIXEL_STD = 0.421, 0.165


def to_gray(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] RGB uint8 -> [T, H, W] float32 luma (ITU-R 601, as torchvision's Grayscale)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        return frames.astype(np.float32)
    return (frames[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def normalize_rois(rois: np.ndarray) -> np.ndarray:
    """96x96 mouth ROIs [T, 96, 96(, 3)] uint8 -> centre 88x88, gray, x / 255, (x - mean) / std."""
    gray = to_gray(rois)
    if gray.shape[1:] != (ROI_SIZE, ROI_SIZE):
        raise ValueError(f"mouth ROIs must be {ROI_SIZE}x{ROI_SIZE}, got {gray.shape[1]}x{gray.shape[2]}")
    off = (ROI_SIZE - CROP_SIZE) // 2
    crop = np.array(gray[:, off:off + CROP_SIZE, off:off + CROP_SIZE], np.float32)  # float32 throughout
    crop /= 255.0
    crop -= PIXEL_MEAN
    crop /= PIXEL_STD
    return crop


def resize_rois(frames: np.ndarray) -> np.ndarray:
    """Pre-cropped mouth videos of another size (e.g. 88 or 112 px) -> [T, 96, 96] gray uint8."""
    import cv2

    gray = to_gray(frames)
    if gray.shape[1:] == (ROI_SIZE, ROI_SIZE):
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return np.stack([cv2.resize(g, (ROI_SIZE, ROI_SIZE), interpolation=cv2.INTER_AREA) for g in gray]).clip(
        0, 255).round().astype(np.uint8)
