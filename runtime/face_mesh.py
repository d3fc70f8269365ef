"""Face detection and the 468-point Face Mesh, from mediapipe's own .tflite models run by OpenVINO.

mediapipe's legacy Python graphs need numpy < 2 and CPython <= 3.12 and cost a second to start; the two
networks they run are small files in the mediapipe wheel, so the runtime runs them itself with the pre-
and post-processing of mediapipe's graphs: the full-range detector on a letterboxed 192 x 192 input in
[-1, 1] (48 x 48 anchors, weighted non-maximum suppression), and the landmark model on a 192 x 192 crop
of 1.5 x the face in [0, 1], rotated so that the eyes are level. Between detections a face is tracked:
the next frame's crop comes from this frame's landmarks, as mediapipe's Face Mesh does.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .sessions import openvino_cache_dir

DETECTOR_FILE = "face_detection/face_detection_full_range_sparse.tflite"
LANDMARK_FILE = "face_landmark/face_landmark.tflite"
MODEL_SIZE = 192  # both networks' square input
ROI_SCALE = 1.5  # the landmark crop is 1.5 x the face (detection box or landmark box), square
MIN_DETECTION_SCORE = 0.5
MIN_PRESENCE = 0.5  # the landmark model's face-presence probability, for a new face
MIN_TRACKED_PRESENCE = 0.1  # ... and to keep following one (hysteresis: a blurred frame does not lose it)
NMS_IOU = 0.3
_cell = (np.arange(48, dtype=np.float32) + 0.5) / 48
ANCHORS = np.stack(np.meshgrid(_cell, _cell), -1).reshape(-1, 2)  # (x, y) cell centres, rows by y


# The models as the mediapipe 0.10.21 wheel ships them (Apache-2.0); any other copy is refused.
MEDIAPIPE = "mediapipe==0.10.21"
MODEL_SHA256 = {DETECTOR_FILE: "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
                LANDMARK_FILE: "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"}


@functools.cache
def _holds_models(folder: Path) -> bool:
    """Both models in `folder`, with their digests (checked once per folder and process: each detector
    compiles two models, and every one of them would otherwise hash both files again)."""
    return all((folder / name).is_file() and hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
               for name, digest in MODEL_SHA256.items())


def fetched_dir() -> Path:
    """Where `python -m smop_edge.runtime.face_mesh` puts the models: inside this Python environment."""
    return Path(sys.prefix) / "share" / "smop-edge" / MEDIAPIPE.replace("==", "-")


def model_dir() -> Path:
    """The folder holding mediapipe's face models: $SMOP_EDGE_FACE_MODELS, else an installed mediapipe
    package's `modules/` (found without importing it), else the copy fetched into this environment."""
    if env := os.environ.get("SMOP_EDGE_FACE_MODELS"):
        return Path(env)
    spec = importlib.util.find_spec("mediapipe")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(list(spec.submodule_search_locations)[0]) / "modules"
        if _holds_models(installed):
            return installed
    if _holds_models(fetched_dir()):
        return fetched_dir()
    raise InputError("mediapipe's face models are missing: run `python -m smop_edge.runtime.face_mesh` once (it "
                     f"takes them from the {MEDIAPIPE} wheel on PyPI), or point SMOP_EDGE_FACE_MODELS at a folder "
                     f"with {DETECTOR_FILE} and {LANDMARK_FILE}")


def fetch_models(dest: Path | None = None) -> Path:
    """Take the two models out of the mediapipe 0.10.21 wheel (downloaded from the package registry with pip,
    for x86_64 whatever this machine is: the .tflite files are the same everywhere) and check their digests.
    The wheel itself is never installed: mediapipe needs numpy < 2 and CPython <= 3.12."""
    import subprocess
    import tempfile
    import zipfile

    dest = dest or fetched_dir()
    if _holds_models(dest):
        return dest
    _holds_models.cache_clear()  # the folder is about to change
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux_2_28_x86_64", "--python-version", "3.12", "-d", tmp, MEDIAPIPE],
                       check=True)
        wheel = next(Path(tmp).glob("mediapipe-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for name, digest in MODEL_SHA256.items():
                data = z.read(f"mediapipe/modules/{name}")
                if hashlib.sha256(data).hexdigest() != digest:
                    raise InputError(f"{name} in {wheel.name} does not have the expected sha256")
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(data)
    return dest


@functools.cache  # one compile per model and process; each detector makes its own infer request
def _compile(name: str):
    import openvino as ov

    path = model_dir() / name
    if not path.is_file():
        raise InputError(f"face model not found: {path}")
    core = ov.Core()
    # f32: on CPUs with bf16 units OpenVINO would otherwise move landmarks by up to 0.7 px (in 192)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"}
    if cache := openvino_cache_dir(config):  # a second start loads the face models in 0.2 s instead of 0.75 s
        core.set_property({"CACHE_DIR": str(cache)})
    return core.compile_model(str(path), "CPU", config)


_warming = threading.Lock()  # held while the models compile: a detector waits for a warm-up under way


def compiled(name: str):
    """The compiled model `name`, compiled once per process (waiting for a warm-up that is compiling it)."""
    with _warming:
        return _compile(name)


def warm_up_in_background() -> None:
    """Import OpenVINO and compile both face models in a thread, while the caller's other start-up work (bundle,
    audio) goes on: the first crop then finds them ready. Once per process; a failure is left to the crop that
    needs the models, which reports it."""
    def work() -> None:
        with _warming:
            try:
                _compile(DETECTOR_FILE)
                _compile(LANDMARK_FILE)
            except Exception:  # noqa: BLE001 - reported by the first detector that is made
                pass

    if not _warming.locked() and _compile.cache_info().currsize < 2:
        threading.Thread(target=work, daemon=True, name="face-models").start()


@dataclass
class Detection:
    score: float
    box: np.ndarray  # (x0, y0, x1, y1) in pixels
    keypoints: np.ndarray  # [6, 2] pixels: right eye, left eye, nose tip, mouth, right ear, left ear


@dataclass
class Roi:
    """A square region, rotated by `angle` (radians, image coordinates) about its centre."""
    centre: np.ndarray
    size: float
    angle: float

    @classmethod
    def on_grid(cls, centre: np.ndarray, size: float, angle: float) -> "Roi":
        """A region on a grid of whole pixels and half degrees: sub-pixel moves of the region only add noise,
        and on the grid the tiny numeric differences between machines and library versions (OpenCV 4.11 vs
        4.14 moved tracked landmarks by up to 0.76 px after 35 frames) stop feeding back through tracking."""
        return cls(np.round(centre).astype(np.float32), float(round(size)), math.radians(round(math.degrees(angle) * 2) / 2))

    @classmethod
    def of_detection(cls, det: Detection) -> "Roi":
        (x0, y0, x1, y1), (eye_r, eye_l) = det.box, det.keypoints[:2]
        return cls.on_grid(np.array([(x0 + x1) / 2, (y0 + y1) / 2]), ROI_SCALE * max(x1 - x0, y1 - y0),
                           math.atan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0]))

    @classmethod
    def of_mesh(cls, mesh: np.ndarray) -> "Roi":
        """The next frame's region from this frame's landmarks."""
        lo, hi = mesh.min(0), mesh.max(0)
        return cls.on_grid((lo + hi) / 2, ROI_SCALE * float((hi - lo).max()),
                           math.atan2(mesh[263, 1] - mesh[33, 1], mesh[263, 0] - mesh[33, 0]))

    def to_model(self) -> np.ndarray:
        """2 x 3 matrix taking image pixels into the model's 192 x 192 input (the ROI levelled)."""
        s = MODEL_SIZE / self.size
        c, n = math.cos(-self.angle) * s, math.sin(-self.angle) * s
        x, y = float(self.centre[0]), float(self.centre[1])
        half = MODEL_SIZE / 2
        return np.array([[c, -n, half - c * x + n * y], [n, c, half - n * x - c * y]], np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


class FaceDetector:
    """mediapipe's full-range face detector (faces from about 1/12 of the image side upwards)."""

    def __init__(self) -> None:
        self._model = compiled(DETECTOR_FILE).create_infer_request()

    def __call__(self, rgb: np.ndarray, min_score: float = MIN_DETECTION_SCORE) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        side = max(h, w)
        scale = MODEL_SIZE / side
        ox, oy = (side - w) / 2, (side - h) / 2  # letterbox: the image centred on a black square
        m = np.array([[scale, 0, ox * scale], [0, scale, oy * scale]], np.float32)
        x = cv2.warpAffine(rgb, m, (MODEL_SIZE, MODEL_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        out = self._model.infer(x[None].astype(np.float32) / 127.5 - 1)
        raw, logits = out[0][0], out[1][0, :, 0]
        keep = np.flatnonzero(logits >= math.log(min_score / (1 - min_score)))
        if keep.size == 0:
            return []
        scores = 1 / (1 + np.exp(-logits[keep]))
        anchor = ANCHORS[keep]
        reg = raw[keep] / MODEL_SIZE
        centre, half = reg[:, :2] + anchor, reg[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], 1)
        points = reg[:, 4:16].reshape(-1, 6, 2) + anchor[:, None]
        found = []
        order = np.argsort(-scores)
        boxes, points, scores = boxes[order], points[order], scores[order]
        left = np.arange(len(scores))
        while left.size:  # weighted NMS: overlapping candidates are averaged by score
            group = left[_iou(boxes[left[0]], boxes[left]) > NMS_IOU]
            weight = scores[group, None] / scores[group].sum()
            box = (boxes[group] * weight).sum(0) * side - np.array([ox, oy, ox, oy])
            kps = (points[group] * weight[:, :, None]).sum(0) * side - np.array([ox, oy])
            found.append(Detection(float(scores[left[0]]), box.astype(np.float32), kps.astype(np.float32)))
            left = np.setdiff1d(left, group, assume_unique=True)
        return found


class FaceLandmarker:
    """mediapipe's Face Mesh landmark model: 468 points of the face in a ROI, or None without a face."""

    def __init__(self) -> None:
        self._model = compiled(LANDMARK_FILE).create_infer_request()

    def __call__(self, rgb: np.ndarray, roi: Roi, min_presence: float = MIN_PRESENCE) -> np.ndarray | None:
        import cv2

        if roi.size < 8:
            return None
        m = roi.to_model()
        crop = cv2.warpAffine(rgb, m, (MODEL_SIZE, MODEL_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        out = self._model.infer(crop[None].astype(np.float32) / 255)
        if 1 / (1 + math.exp(-float(np.clip(out[1].ravel()[0], -80, 80)))) < min_presence:
            return None
        pts = out[0].reshape(468, 3)[:, :2]
        back = cv2.invertAffineTransform(m)
        return (pts @ back[:, :2].T + back[:, 2]).astype(np.float32)


if __name__ == "__main__":  # set-up: make the models available to this environment (a no-op when they are)
    try:
        print(model_dir())
    except InputError:
        print(fetch_models())
