"""Lip cropping with mediapipe Face Mesh (the models ship inside the mediapipe 0.10.21 wheel).

Framing follows the reference preprocessing (auto_avsr, used by Llama-AVSR): a 4-DOF similarity
transform maps stable landmarks (eye centres, nose base, mouth corners) of the temporally smoothed
face onto the 68-point mean face (256 x 256 frame), and a 96 x 96 patch is cut centred on the mouth.
For a mean-shaped face the mouth centroid lands at (48, 48) and the mouth is about 45 px wide; eyes
are levelled and the scale follows the whole face, so mouth opening does not change it.
Face Mesh points stand in for the 68-point scheme (eye rings for 36-41 / 42-47, 2 for 33, 61 / 291
for 48 / 54, the lip rings for 48-67).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .lips import ROI_SIZE

# mean-face targets (auto_avsr's 20words_mean_face, 256 x 256): right-eye centre, left-eye centre,
# nose base (33), mouth corners (48, 54), and the mouth centroid (mean of 48-67)
MEAN_FACE_STABLE = np.array([[102.07, 94.27], [156.36, 93.58], [128.87, 137.30], [107.17, 157.20],
                             [152.19, 156.99]], np.float32)
MEAN_FACE_MOUTH = np.array([129.31, 157.82], np.float32)

RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
NOSE_BASE = 2
MOUTH_CORNERS = (61, 291)
LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
SMOOTH_WINDOW = 12  # frames, as the reference's window_margin
MAX_TILT = np.radians(60)  # a detection whose eye line is steeper is taken for a false one (upside-down "faces")


def key_points(mesh: np.ndarray) -> np.ndarray:
    """468 Face Mesh points [468, 2] -> the 5 stable points + mouth centroid [6, 2] (pixels)."""
    return np.stack([mesh[RIGHT_EYE].mean(0), mesh[LEFT_EYE].mean(0), mesh[NOSE_BASE], mesh[MOUTH_CORNERS[0]],
                     mesh[MOUTH_CORNERS[1]], mesh[LIPS].mean(0)]).astype(np.float32)


def mouth_opening(mesh: np.ndarray) -> float:
    """Inner-lip gap divided by the eye-centre distance (scale free)."""
    eyes = np.linalg.norm(mesh[RIGHT_EYE].mean(0) - mesh[LEFT_EYE].mean(0))
    return float(np.linalg.norm(mesh[UPPER_INNER_LIP] - mesh[LOWER_INNER_LIP]) / max(eyes, 1e-6))


def crop_transform(points: np.ndarray) -> np.ndarray:
    """2x3 similarity matrix taking image pixels to the 96 x 96 crop, from key points [6, 2]."""
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(points[:5], MEAN_FACE_STABLE, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("degenerate landmarks")
    mouth = matrix[:, :2] @ points[5] + matrix[:, 2]
    matrix[:, 2] += ROI_SIZE / 2 - mouth
    return matrix


def smooth(track: np.ndarray, causal: bool, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """Moving average of key points over time, centred (files) or trailing (live), then moved back onto
    the current frame's centroid as the reference does: the shape (scale, rotation) is smoothed, the
    position follows the face."""
    out = np.empty_like(track)
    half = window // 2
    for t in range(len(track)):
        lo, hi = (max(0, t - window + 1), t + 1) if causal else (max(0, t - half), min(len(track), t + half + 1))
        out[t] = track[lo:hi].mean(0)
    return out + (track.mean(axis=-2, keepdims=True) - out.mean(axis=-2, keepdims=True))


def interpolate(track: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without landmarks linearly between detections (copy at the ends)."""
    idx = np.flatnonzero(found)
    if idx.size == 0:
        return track
    t = np.arange(len(track))
    flat = track.reshape(len(track), -1)
    filled = np.stack([np.interp(t, idx, flat[idx, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(track.shape).astype(np.float32)


@dataclass
class FaceTrack:
    points: np.ndarray  # [T, 6, 2] key points (NaN where missing)
    opening: np.ndarray  # [T] mouth opening (NaN where missing)
    size: np.ndarray  # [T] eye distance in pixels (NaN where missing)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.opening)


class FaceMeshDetector:
    """Face Mesh landmarks for every face in a frame, small faces included.

    Faces are found with the full-range detector (on the whole frame, then on overlapping tiles for faces
    too small for it) and tracked: later frames take their landmark crop from the previous frame's
    landmarks, and detection runs again every `redetect_every` frames (new faces) or when a face is lost;
    with no face in view it runs every `search_every` frames (searching a 720p frame's tiles takes ~120 ms)."""

    def __init__(self, max_faces: int = 4, redetect_every: int = 25, search_every: int = 5) -> None:
        from .face_mesh import FaceDetector, FaceLandmarker

        self.max_faces, self.redetect_every, self.search_every = max_faces, redetect_every, search_every
        self._detector, self._landmarker = FaceDetector(), FaceLandmarker()
        self._rois: list = []  # face_mesh.Roi per tracked face
        self._since_detect = search_every  # the first frame is searched

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        """All faces in one RGB frame as [468, 2] pixel coordinates."""
        from .face_mesh import MIN_TRACKED_PRESENCE, Roi

        rgb = np.ascontiguousarray(rgb)
        tracked = (self._landmarker(rgb, roi, MIN_TRACKED_PRESENCE) for roi in self._rois)
        faces = _distinct([f for f in tracked if f is not None])
        lost = len(faces) < len(self._rois)
        if lost or self._since_detect >= (self.redetect_every if faces else self.search_every):
            self._since_detect = 0
            faces = _distinct(faces + self._search(rgb, [Roi.of_mesh(f).centre for f in faces]))
        self._since_detect += 1
        faces = faces[: self.max_faces]
        self._rois = [Roi.of_mesh(f) for f in faces]
        return faces

    def _search(self, rgb: np.ndarray, known: list[np.ndarray]) -> list[np.ndarray]:
        """Faces not among `known` (face centres, extended with each face found): detections on the whole
        frame, checked by the landmark model; only when the whole frame shows no face at all, known ones
        included, on overlapping tiles of half its height."""
        found, seen = self._search_in(rgb, 0, 0, None, known)
        h, w = rgb.shape[:2]
        tile = min(h, w) // 2
        if not seen and tile >= 64:
            for y in range(0, max(1, h - tile // 2), tile // 2):
                for x in range(0, max(1, w - tile // 2), tile // 2):
                    found += self._search_in(rgb, x, y, tile, known)[0]
        return found

    def _search_in(self, rgb: np.ndarray, x: int, y: int, size: int | None,
                   known: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
        """New faces in the square tile at (x, y) (None: the whole frame), and whether any face was there."""
        from .face_mesh import Roi

        found, seen = [], False
        for det in self._detector(rgb if size is None else rgb[y:y + size, x:x + size]):
            det.box += np.array([x, y, x, y], np.float32)
            det.keypoints += np.array([x, y], np.float32)
            centre, side = (det.box[:2] + det.box[2:]) / 2, float(max(det.box[2:] - det.box[:2]))
            if any(np.linalg.norm(centre - k) < side / 2 for k in known):
                seen = True
                continue
            roi = Roi.of_detection(det)
            mesh = self._landmarker(rgb, roi) if abs(roi.angle) < MAX_TILT else None
            if mesh is not None:
                found.append(mesh)
                known.append(Roi.of_mesh(mesh).centre)
                seen = True
        return found, seen

    def close(self) -> None:
        """Nothing to release (kept so that callers may close any detector)."""


def _distinct(faces: list[np.ndarray]) -> list[np.ndarray]:
    """Faces without repeats: a face whose mouth lies within an earlier face's landmarks' box is that face
    again (found twice by overlapping tiles, a part of it detected as a face, or two converged tracks)."""
    kept: list[np.ndarray] = []
    for f in faces:
        mouth = key_points(f)[5]
        if not any((g.min(0) <= mouth).all() and (mouth <= g.max(0)).all() for g in kept):
            kept.append(f)
    return kept


def track_faces(frames: Iterable[np.ndarray], detector: FaceMeshDetector,
                progress: Callable[[str, int], None] | None = None) -> tuple[list[FaceTrack], int]:
    """Landmarks for every frame (consumed once, so a decoder can stream them), linked into tracks by
    the nearest mouth between frames, and the number of frames. Only landmarks are kept."""
    tracks: list[dict] = []
    n = 0
    for t, frame in enumerate(frames):
        n = t + 1
        if progress and n % 25 == 0:
            progress("lip crop", n)
        faces = detector(np.ascontiguousarray(frame))
        taken: set[int] = set()
        for mesh in faces:
            pts, eyes = key_points(mesh), np.linalg.norm(mesh[RIGHT_EYE].mean(0) - mesh[LEFT_EYE].mean(0))
            best, dist = None, np.inf
            for i, tr in enumerate(tracks):
                if i in taken or tr["last"] is None:
                    continue
                d = np.linalg.norm(tr["last"] - pts[5])
                if d < dist and d < eyes * 1.5:
                    best, dist = i, d
            if best is None:
                tracks.append({"seen": {}, "last": None})
                best = len(tracks) - 1
            tr = tracks[best]
            taken.add(best)
            tr["seen"][t] = (pts, mouth_opening(mesh), eyes)
            tr["last"] = pts[5]
    result = []
    for tr in tracks:
        points, opening, size = np.full((n, 6, 2), np.nan, np.float32), np.full(n, np.nan), np.full(n, np.nan)
        for t, (pts, op, eyes) in tr["seen"].items():
            points[t], opening[t], size[t] = pts, op, eyes
        result.append(FaceTrack(points, opening, size))
    return result, n


def choose_speaker(tracks: list[FaceTrack], audio_energy: np.ndarray | None = None) -> FaceTrack | None:
    """The track whose mouth motion follows the audio (correlation of opening with the audio energy
    envelope at 25 fps); without audio, or to break ties, the largest face seen longest."""
    tracks = [t for t in tracks if t.found.sum() >= max(3, 0.1 * len(t.found))]
    if not tracks:
        return None

    def presence(t: FaceTrack) -> float:
        return float(np.nansum(t.size))

    if audio_energy is None or len(tracks) == 1:
        return max(tracks, key=presence)

    def follows(t: FaceTrack) -> float:
        ok = t.found[: len(audio_energy)]
        if ok.sum() < 3:
            return -1.0
        a, b = t.opening[: len(audio_energy)][ok], audio_energy[: len(ok)][ok]
        if a.std() < 1e-6 or b.std() < 1e-6:
            return 0.0
        return float(np.corrcoef(a, b)[0, 1])

    return max(tracks, key=lambda t: (round(follows(t), 2), presence(t)))


def crop_mouths(frames: list[np.ndarray] | np.ndarray, audio: np.ndarray | None = None, causal: bool = False,
                detector: FaceMeshDetector | None = None) -> tuple[np.ndarray, int]:
    """RGB frames [T, H, W, 3] at 25 fps -> (96 x 96 RGB mouth crops [T, 96, 96, 3], frames where the
    chosen face was found). With no face at all the crops are empty ([0, 96, 96, 3], 0)."""
    crops, found, _ = crop_mouths_with_transforms(lambda: iter(frames), audio, causal, detector)
    return crops, found


def crop_mouths_with_transforms(frames: Callable[[], Iterable[np.ndarray]], audio: np.ndarray | None = None,
                                causal: bool = False, detector: FaceMeshDetector | None = None,
                                progress: Callable[[str, int], None] | None = None
                                ) -> tuple[np.ndarray, int, list[np.ndarray]]:
    """Two passes over `frames()` (e.g. a video decoder, so full frames are never all in memory):
    landmarks first, then the warp with the smoothed landmarks of the chosen speaker. Returns the
    crops, the frames where the speaker's face was found and each frame's image-to-crop transform."""
    with SegmentCropper(frames, video_rms(audio), causal, detector, progress) as cropper:
        return cropper.crop(0, None)


def video_rms(audio: np.ndarray | None) -> np.ndarray | None:
    """The audio's RMS per 25 fps video frame (what the speaker is chosen by)."""
    from .features import SAMPLES_PER_VIDEO_FRAME
    from .segments import frame_power

    if audio is None or len(audio) < SAMPLES_PER_VIDEO_FRAME:
        return None
    return np.sqrt(frame_power(audio, SAMPLES_PER_VIDEO_FRAME))


class SegmentCropper:
    """The offline cropper in memory that does not grow with the video: `crop(start, end)` takes the
    frames of one segment at a time, segments in order, from two passes over `frames()` that advance with
    them (landmarks of the segment's frames, then the warp; only 6 points per face and frame and the
    segment's crops are held). The speaker is chosen per segment (the face whose mouth follows the audio
    level `video_rms` there: people take turns) and its landmarks are smoothed within the segment."""

    def __init__(self, frames: Callable[[], Iterable[np.ndarray]], video_rms: np.ndarray | None = None,
                 causal: bool = False, detector: FaceMeshDetector | None = None,
                 progress: Callable[[str, int], None] | None = None) -> None:
        self._own = detector is None
        self._detector = detector or FaceMeshDetector()
        self._marks, self._warp = iter(frames()), iter(frames())
        self.video_rms, self.causal, self.progress = video_rms, causal, progress
        self.position = 0  # frames consumed by both passes
        self.exhausted = False  # the video has ended

    def crop(self, start: int, end: int | None) -> tuple[np.ndarray, int, list[np.ndarray]]:
        """96 x 96 RGB crops of frames [start, end) (to the video's end with None; fewer where it ends
        sooner; empty when no face qualifies), the frames where the chosen face was found, and each
        frame's image-to-crop transform. `start` is at or after the previous segment's end."""
        import cv2

        if start < self.position:
            raise ValueError("segments must come in order")
        for _ in zip(range(start - self.position), self._marks, self._warp):  # frames between segments
            pass
        want = None if end is None else end - start
        report = (lambda stage, n: self.progress(stage, start + n)) if self.progress else None
        tracks, n = track_faces(itertools.islice(self._marks, want), self._detector, report)
        self.position = start + n
        self.exhausted = want is None or n < want
        energy = None if self.video_rms is None else self.video_rms[start: start + n]
        track = choose_speaker(tracks, energy if energy is not None and len(energy) else None)
        frames = itertools.islice(self._warp, n)
        if track is None:
            for _ in frames:  # the warp pass keeps in step
                pass
            return np.zeros((0, ROI_SIZE, ROI_SIZE, 3), np.uint8), 0, []
        transforms = [crop_transform(p) for p in smooth(interpolate(track.points, track.found), self.causal)]
        crops = np.zeros((n, ROI_SIZE, ROI_SIZE, 3), np.uint8)
        for t, frame in zip(range(n), frames):
            crops[t] = cv2.warpAffine(np.ascontiguousarray(frame), transforms[t], (ROI_SIZE, ROI_SIZE),
                                      flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return crops, int(track.found.sum()), transforms

    def close(self) -> None:
        if self._own:
            self._detector.close()

    def __enter__(self) -> "SegmentCropper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def draw_crop_box(frame: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The frame with the crop's outline (the 96 x 96 square mapped back into the image) drawn on it."""
    import cv2

    inverse = cv2.invertAffineTransform(transform)
    square = np.array([[0, 0], [ROI_SIZE, 0], [ROI_SIZE, ROI_SIZE], [0, ROI_SIZE]], np.float32)
    corners = (inverse[:, :2] @ square.T).T + inverse[:, 2]
    out = np.ascontiguousarray(frame).copy()
    cv2.polylines(out, [corners.round().astype(np.int32)], True, (0, 255, 0), max(1, frame.shape[0] // 240))
    return out


class LiveLipCropper:
    """Frame-by-frame (causal) lip cropping for live captioning: `push(frame)` returns the 96 x 96 crop
    of the tracked face at once, smoothing over the trailing window only. A missed frame reuses the last
    landmarks; before any face is seen it returns None."""

    def __init__(self, window: int = SMOOTH_WINDOW, detector: FaceMeshDetector | None = None) -> None:
        self.window = window
        self._detector = detector or FaceMeshDetector()
        self._history: list[np.ndarray] = []
        self.found = 0
        self.transform: np.ndarray | None = None

    def push(self, frame: np.ndarray) -> np.ndarray | None:
        import cv2

        faces = self._detector(frame)
        if faces:
            points = [key_points(f) for f in faces]
            if self._history:  # stay with the face we were following
                last = self._history[-1][5]
                current = min(points, key=lambda p: float(np.linalg.norm(p[5] - last)))
            else:  # start with the largest face
                current = max(points, key=lambda p: float(np.linalg.norm(p[1] - p[0])))
            self._history.append(current)
            self.found += 1
        elif self._history:
            self._history.append(self._history[-1])
        else:
            return None
        self._history = self._history[-self.window:]
        track = np.stack(self._history)
        smoothed = smooth(track, causal=True, window=self.window)[-1]
        self.transform = crop_transform(smoothed)  # image -> crop, for a preview's outline (draw_crop_box)
        return cv2.warpAffine(np.ascontiguousarray(frame), self.transform, (ROI_SIZE, ROI_SIZE),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def close(self) -> None:
        self._detector.close()
