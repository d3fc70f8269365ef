"""Packaging the demo model: samples drawn at random, each with the bundle's own transcript."""

import json

import pytest

from smop_edge.recipe.demo_package import FILES, LOG, PARTS, package, pick_samples


def _stage(folder, steps, dev_wer):
    """A training run's folder: a tiny model's checkpoint (its seed: the folder name's length), a tokenizer,
    and a log of losses at `steps` and a dev WER at the last."""
    from smop_edge.models import zoo
    from smop_edge.models.checkpoint import random_init, save_checkpoint

    folder.mkdir()
    save_checkpoint(random_init(zoo.get("tiny-dedr"), seed=len(folder.name)), folder / FILES[0])
    (folder / FILES[1]).write_bytes(folder.name.encode() + b" " + FILES[1].encode())
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
    said = {"u0": "one d", "u1": "one b", "u2": "one b", "u3": "one", "u4": "one b c"}
    clean = {"snr": None, "rows": [{"id": k, "hypothesis": h} for k, h in said.items()]}
    noisy = {"snr": 0.0, "rows": [{"id": k, "hypothesis": ""} for k in said]}
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"wer": 0.1, "conditions": [noisy, clean]}))
    train = _stage(tmp_path / "run", [25, 50], 0.5)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    return tmp_path, manifest, report, train


def test_clips_drawn_at_random_with_the_clean_transcript(run):
    _, manifest, report, _ = run
    draws = [tuple(r["id"] for r in pick_samples(manifest, report, seed=s)) for s in range(40)]
    assert all(len(d) == 3 and list(d) == sorted(d) for d in draws)  # three rows, in manifest order
    assert len(set(draws)) == 10  # every 3 of the 5, wrong transcripts as likely as right ones (u0, u3)
    assert pick_samples(manifest, report, seed=3) == pick_samples(manifest, report, seed=3)
    assert all(r["transcript"] == {"u0": "one d", "u1": "one b", "u2": "one b", "u3": "one", "u4": "one b c"}[r["id"]]
               for r in pick_samples(manifest, report))


def test_package_copies_files_and_writes_the_sample_manifest(run):
    root, manifest, report, train = run
    out = package(train, root / "bundle", manifest, report, root / "demo")
    assert (out / "bundle" / "manifest.json").exists()
    assert all((out / name).read_bytes() == (train / name).read_bytes() for name in FILES)
    assert (out / PARTS).stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in (out / "samples" / "manifest.jsonl").read_text().splitlines()]
    picked = pick_samples(manifest, report)
    assert [r["path"] for r in rows] == ["sample-1.mp4", "sample-2.mp4", "sample-3.mp4"]
    assert [r["transcript"] for r in rows] == [r["transcript"] for r in picked]
    assert (out / "samples" / "sample-2.mp4").read_bytes() == b"clip " + picked[1]["id"].encode()


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
    assert all((out / name).read_bytes() == (tuned / name).read_bytes() for name in FILES)
    rows = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
    assert [(r["step"], r["stage"]) for r in rows if "ce" in r] == [
        (25, "run"), (50, "run"), (75, "tuned"), (100, "tuned"), (125, "tuned")]
    assert [(r["step"], r["dev_wer"]["asr"]) for r in rows if "dev_wer" in r] == [(50, 0.5), (125, 0.25)]
    assert (out / "curves.png").stat().st_size > 1000
