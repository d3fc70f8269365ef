"""Packaging the demo model: samples are correctly transcribed clean held-out clips, the longest of each engine."""

import json

import pytest

from smop_edge.recipe.demo_package import FILES, LOG, package, pick_samples


def _stage(folder, steps, dev_wer):
    """A training run's folder: its files, and a log of losses at `steps` and a dev WER at the last."""
    folder.mkdir()
    for name in FILES:
        (folder / name).write_bytes(folder.name.encode() + b" " + name.encode())
    rows = [{"step": s, "ce": 1.0 / s} for s in steps] + [{"step": steps[-1], "dev_wer": {"asr": dev_wer}}]
    (folder / LOG).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture()
def run(tmp_path):
    voices = ["espeak:en-us+f3", "flite:rms", "espeak:en-us+m3", "festival:ked_diphone", "flite:rms"]
    texts = ["one b", "one b", "one b", "one b", "one b c"]
    rows = [{"id": f"u{i}", "path": f"test/u{i}.mp4", "text": t, "voice": v, "face": "f", "split": "test",
             "seconds": 1.0} for i, (v, t) in enumerate(zip(voices, texts))]
    (tmp_path / "test").mkdir()
    for r in rows:
        (tmp_path / r["path"]).write_bytes(b"clip " + r["id"].encode())
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    errors = {"u0": 1, "u1": 0, "u2": 0, "u3": 0, "u4": 0}  # u0 (espeak) is wrong, so u2 stands for espeak
    clean = {"snr": None, "rows": [{"id": k, "errors": e} for k, e in errors.items()]}
    noisy = {"snr": 0.0, "rows": [{"id": k, "errors": 0} for k in errors]}
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"wer": 0.1, "conditions": [noisy, clean]}))
    train = _stage(tmp_path / "run", [25, 50], 0.5)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    return tmp_path, manifest, report, train


def test_longest_right_clean_clip_of_each_engine(run):
    _, manifest, report, _ = run
    # flite: u4 has more words than u1; espeak: u0 is wrong, so u2; engines in order of their first right clip
    assert [r["id"] for r in pick_samples(manifest, report)] == ["u4", "u2", "u3"]


def test_package_copies_files_and_writes_the_sample_manifest(run):
    root, manifest, report, train = run
    out = package(train, root / "bundle", manifest, report, root / "demo")
    assert (out / "bundle" / "manifest.json").exists()
    assert all((out / name).read_bytes() == b"run " + name.encode() for name in FILES)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in (out / "samples" / "manifest.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == ["sample-1.mp4", "sample-2.mp4", "sample-3.mp4"]
    assert (out / "samples" / "sample-2.mp4").read_bytes() == b"clip u2"


def test_no_clean_condition_is_an_error(run, tmp_path):
    _, manifest, _, _ = run
    report = tmp_path / "noisy.json"
    report.write_text(json.dumps({"conditions": [{"snr": 5.0, "rows": []}]}))
    with pytest.raises(ValueError, match="no clean condition"):
        pick_samples(manifest, report)


def test_stages_ship_the_last_checkpoint_and_one_log_whose_steps_follow_on(run):
    root, manifest, report, train = run
    tuned = _stage(root / "tuned", [25, 50, 75], 0.25)  # `train --init run/checkpoint.pth` for 75 steps
    out = package([train, tuned], root / "bundle", manifest, report, root / "demo")
    assert all((out / name).read_bytes() == b"tuned " + name.encode() for name in FILES)
    rows = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
    assert [(r["step"], r["stage"]) for r in rows if "ce" in r] == [
        (25, "run"), (50, "run"), (75, "tuned"), (100, "tuned"), (125, "tuned")]
    assert [(r["step"], r["dev_wer"]["asr"]) for r in rows if "dev_wer" in r] == [(50, 0.5), (125, 0.25)]
    assert (out / "curves.png").stat().st_size > 1000
