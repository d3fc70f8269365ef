"""The synthetic audio-visual corpus: domain, media, manifest, resume, disjoint splits."""

import json

import numpy as np
import pytest

from smop_edge.apps.cli import main
from smop_edge.recipe import corpus, face_scene
from smop_edge.runtime import media


def test_words_are_alphanumeric_items():
    rng = np.random.default_rng(0)
    drawn = [corpus.sample_words(rng) for _ in range(500)]
    assert {len(d) for d in drawn} == set(range(1, 9))
    flat = [w for d in drawn for w in d]
    assert set(flat) <= set(corpus.WORDS) and set(corpus.LETTERS) <= set(flat)
    assert 0 < flat.count("oh") < flat.count("zero")
    said = corpus.spoken_text(["seven", "b", "z"], np.random.default_rng(1), zed=True)
    assert said.replace(",", "").split() == ["seven", "bee", "zed"]


def test_manifest_rows_point_at_talking_face_clips(tiny_corpus):
    rows = corpus.read_manifest(tiny_corpus / "train" / corpus.MANIFEST)
    assert len(rows) == 4
    for row in rows:
        info = media.probe(row["file"])
        assert info.has_audio and info.has_video
        assert abs(info.duration - row["seconds"]) < 0.15
        assert set(row["text"].split()) <= set(corpus.WORDS)
        frames = list(media.iter_video(row["file"]))
        audio = media.read_audio(row["file"])
        assert abs(len(frames) / 25 - len(audio) / 16000) < 0.1
        assert np.std(frames[0]) > 20  # a picture, not a blank


def test_synth_resumes_and_splits_are_disjoint(tiny_corpus, tmp_path):
    train = corpus.read_manifest(tiny_corpus / "train" / corpus.MANIFEST)
    test = corpus.read_manifest(tiny_corpus / "test" / corpus.MANIFEST)
    assert not {r["voice"] for r in train} & {r["voice"] for r in test}
    faces = {split: {i.id for i in face_scene.identities(split)} for split in corpus.SPLITS}
    assert not faces["train"] & faces["test"] and not faces["sealed"] & (faces["train"] | faces["test"])
    # a second run of the same command keeps the rows and adds the missing ones, identically
    out = tmp_path / "c"
    assert main(["synth", "--out", str(out), "--n", "1", "--seed", "5", "--quiet"]) == 0
    assert main(["synth", "--out", str(out), "--n", "2", "--seed", "5", "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / corpus.MANIFEST).read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in train[:2]]
    assert [r["text"] for r in rows] == [r["text"] for r in train[:2]]


def test_faces_use_frozen_rigs_that_the_face_mesh_still_finds(monkeypatch):
    """The corpus's video must not move with the lip cropper: every split's faces take their rigs from the
    frozen table, which today's face mesh reproduces within a pixel or two (a larger drift says the mesh moved)."""
    from smop_edge.recipe.talking_face import FaceRig

    frozen, now = face_scene.frozen_rigs(), face_scene.freeze_rigs()
    assert set(now) == set(frozen) and len(frozen) == 6 * len(face_scene.PHOTOS) * len(corpus.SPLITS)
    for key, rig in now.items():
        for name, points in vars(rig).items():
            assert np.abs(points - getattr(frozen[key], name)).max() < 2.0, (key, name)

    def no_mesh(photo):
        raise AssertionError("the corpus ran the face mesh")

    monkeypatch.setattr(FaceRig, "from_photo", no_mesh)
    face_scene.face.cache_clear()
    identity = face_scene.identities("sealed")[0]
    photo, rig = face_scene.face(identity)
    assert photo.shape[:2] == face_scene.identity_photo(identity).shape[:2] and rig is frozen[identity.id]
    with pytest.raises(KeyError, match="python -m smop_edge.recipe.face_scene"):
        face_scene.face(face_scene.FaceIdentity("hopper", stretch_x=1.5))
