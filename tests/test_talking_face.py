"""The talking-face renderer, and the lip cropper on a face whose mouth motion is known."""

import subprocess

import numpy as np
import pytest

from smop_edge.recipe.talking_face import FaceRig, parse_psdur, render, viseme_track
from smop_edge.runtime.lip_cropper import (FaceMeshDetector, crop_mouths_with_transforms, key_points,
                                           mouth_opening)


@pytest.fixture(scope="module")
def spoken():
    """flite's phone timings for a short alphanumeric string, rendered on the astronaut photo."""
    from skimage import data

    out = subprocess.run(["flite", "-t", "seven b four zero", "-psdur", "-o", "/dev/null"], capture_output=True,
                         text=True, check=True)
    phones = parse_psdur(out.stdout + out.stderr)
    n_frames = int(phones[-1][1] * 25)
    track = viseme_track(phones, n_frames)
    photo = data.astronaut()
    return photo, phones, track, render(photo, track)


def test_phone_timings_become_a_viseme_track(spoken):
    _, phones, track, frames = spoken
    assert [p for p, _ in phones][:3] == ["pau", "s", "eh"]
    assert all(b[1] > a[1] for a, b in zip(phones, phones[1:]))
    assert track.shape == (len(frames), 2) and track[0, 0] < 0.05  # starts closed (pause)
    b_end = dict((p, e) for p, e in phones)["b"]
    iy_mid = next((s + e) / 2 for (_, s), (p, e) in zip(phones, phones[1:]) if p == "iy")
    assert track[int(iy_mid * 25), 0] > track[int(b_end * 25) - 1, 0]  # "b" closes, "iy" opens


def test_measured_mouth_opening_follows_the_commanded_one(spoken):
    _, _, track, frames = spoken
    detector = FaceMeshDetector()
    measured = np.array([mouth_opening(f[0]) if (f := detector(frame)) else np.nan for frame in frames])
    detector.close()
    found = ~np.isnan(measured)
    assert found.all()
    r = np.corrcoef(track[:, 0], measured)[0, 1]
    assert r > 0.85, r


def test_crops_of_a_talking_face_stay_put(spoken):
    photo, _, _, frames = spoken
    crops, found, transforms = crop_mouths_with_transforms(lambda: frames)
    assert found == len(frames)
    scales = np.array([np.hypot(*m[:, 0]) for m in transforms])
    assert scales.std() / scales.mean() < 0.03  # jaw motion does not rescale the crop
    # like the reference, the crop is centred on the (smoothed) mouth centroid, which drops with the jaw;
    # its error against each frame's own detected centroid is the jitter
    detector = FaceMeshDetector()
    errors = []
    for frame, m in zip(frames, transforms):
        centroid = key_points(detector(frame)[0])[5]
        errors.append(np.linalg.norm(m[:, :2] @ centroid + m[:, 2] - 48))
    detector.close()
    assert max(errors) < 3.0, max(errors)


def test_rig_needs_a_face():
    with pytest.raises(ValueError, match="no face"):
        FaceRig.from_photo(np.full((200, 200, 3), 128, np.uint8))


def test_the_face_whose_mouth_follows_the_audio_is_chosen(spoken):
    import cv2

    photo, _, track, frames = spoken
    small = [cv2.resize(f, (256, 256)) for f in frames]
    still = cv2.resize(photo, (256, 256))
    rng = np.random.default_rng(0)
    envelope = np.repeat(track[:, 0], 640)  # audio loud exactly when the mouth opens
    audio = (envelope * rng.standard_normal(len(envelope))).astype(np.float32)
    for talker_left in (True, False):
        pairs = [np.concatenate([f, still] if talker_left else [still, f], axis=1) for f in small]
        _, found, transforms = crop_mouths_with_transforms(lambda: pairs, audio)
        centre_x = np.mean([cv2.invertAffineTransform(m)[0] @ [48, 48, 1] for m in transforms])
        assert found == len(pairs)
        assert (centre_x < 256) == talker_left, centre_x


def test_the_speaker_is_chosen_segment_by_segment(spoken):
    """Two faces; the left one talks in the first segment, the right one in the second: a long video's
    cropper follows whoever speaks in each segment, segments in order, one second pass over the frames."""
    import cv2

    from smop_edge.runtime.lip_cropper import SegmentCropper, video_rms

    photo, _, track, frames = spoken
    small = [cv2.resize(f, (256, 256)) for f in frames]
    still = cv2.resize(photo, (256, 256))
    n = len(small)
    video = ([np.concatenate([f, still], axis=1) for f in small] +
             [np.concatenate([still, f], axis=1) for f in small])
    envelope = np.repeat(np.concatenate([track[:, 0], track[:, 0]]), 640)
    audio = (envelope * np.random.default_rng(0).standard_normal(len(envelope))).astype(np.float32)
    passes = []

    def frames_again():
        passes.append(1)
        return iter(video)

    cropper = SegmentCropper(frames_again, video_rms(audio))
    sides = []
    for start, end in ((0, n), (n, 2 * n)):
        crops, found, transforms = cropper.crop(start, end)
        assert len(crops) == found == n
        sides.append(np.mean([cv2.invertAffineTransform(m)[0] @ [48, 48, 1] for m in transforms]) < 256)
    assert sides == [True, False] and len(passes) == 2  # one landmark and one warp pass, both segments
    assert cropper.crop(2 * n, 3 * n)[1] == 0 and cropper.exhausted
