"""`smop-edge batch`: inputs to jobs, a local pool and a local Ray cluster giving `transcribe`'s results,
reruns that skip what is done, a worker killed mid-run, Ctrl-C and a rerun, a corrupt file among good ones
(tiny random-weight bundle: the text is meaningless, equality is the point)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import astronaut_clip, tone_bursts, write_wav
from smop_edge.apps import batch
from smop_edge.apps.cli import main
from smop_edge.runtime import load_recognizer
from smop_edge.runtime.errors import InputError, UsageError
from smop_edge.runtime.media import write_video
from smop_edge.runtime.transcribe import transcribe_media


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A face video, two wavs (one in a subfolder) and a corrupt mp4."""
    root = tmp_path_factory.mktemp("archive") / "talks"
    (root / "day2").mkdir(parents=True)
    frames, _ = astronaut_clip(40, size=256)
    write_video(root / "face.mp4", frames, 25, tone_bursts(40 / 25))
    write_wav(root / "a.wav", tone_bursts(1.5, seed=1))
    write_wav(root / "day2" / "b.wav", tone_bursts(2.5, seed=2))
    (root / "day2" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "notes.txt").write_text("not media")
    return root


def outputs(out: Path) -> dict[str, dict]:
    """Each output JSON by name, without the fields that differ from run to run (timings)."""
    return {str(p.relative_to(out)): {k: v for k, v in json.loads(p.read_text()).items()
                                      if k not in ("timings_ms", "real_time_factor")}
            for p in sorted(out.rglob("*.json")) if p.name != batch.SUMMARY}


def test_inputs_become_named_jobs(tmp_path, archive):
    jobs = batch.collect([str(archive)])
    assert [j.name for j in jobs] == ["talks/a", "talks/day2/b", "talks/day2/broken", "talks/face"]
    (tmp_path / "x").mkdir()
    write_wav(tmp_path / "x" / "talk.wav", np.zeros(800))
    write_wav(tmp_path / "talk.wav", np.zeros(800))
    (tmp_path / "talk.mp4").write_bytes(b"")
    # same stem from two files: they keep their extensions; a file given twice is done once
    names = [j.name for j in batch.collect([str(tmp_path / "talk.wav"), str(tmp_path / "talk.mp4"),
                                            str(tmp_path / "talk.wav")])]
    assert names == ["talk.wav", "talk.mp4"]
    # globs name their matches below the pattern's literal folder
    assert [j.name for j in batch.collect([str(tmp_path / "**" / "*.wav")])] == ["talk", "x/talk"]
    # manifests: paths relative to the manifest name the outputs
    (tmp_path / "m.jsonl").write_text('{"path": "x/talk.wav"}\n\n{"path": "talk.wav", "text": "ignored"}\n')
    assert [(j.name, j.source) for j in batch.collect([str(tmp_path / "m.jsonl")])] == [
        ("x/talk", tmp_path / "x/talk.wav"), ("talk", tmp_path / "talk.wav")]
    (tmp_path / "x" / "up.jsonl").write_text('{"path": "../talk.wav"}\n')  # named below --out, never above
    assert [j.name for j in batch.collect([str(tmp_path / "x" / "up.jsonl")])] == ["talk"]
    (tmp_path / "m.csv").write_text("path,speaker\nx/talk.wav,1\n")
    assert [j.name for j in batch.collect([str(tmp_path / "m.csv")])] == ["x/talk"]
    (tmp_path / "bad.csv").write_text("file\nx/talk.wav\n")
    (tmp_path / "bad.jsonl").write_text('["x/talk.wav"]\n')
    for bad, error in [("missing.mp4", InputError), ("bad.csv", InputError), ("bad.jsonl", InputError),
                       ("*.mkv", UsageError)]:
        with pytest.raises(error):
            batch.collect([str(tmp_path / bad)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no media files"):
        batch.collect([str(tmp_path / "empty")])
    for year in ("2023", "2024"):  # two folders of one name would write the same outputs: refused
        (tmp_path / year / "talks").mkdir(parents=True)
        write_wav(tmp_path / year / "talks" / "t.wav", np.zeros(800))
    with pytest.raises(UsageError, match="would both be written as talks/t.wav.json"):
        batch.collect([str(tmp_path / "2023" / "talks"), str(tmp_path / "2024" / "talks")])


def test_pool_shape_fills_the_cores_and_respects_memory(monkeypatch):
    monkeypatch.setattr(batch, "available_cores", lambda: 8)
    monkeypatch.setattr(batch, "available_gib", lambda: 100.0)
    assert batch.pool_shape(100, None, None) == (8, 1)
    assert batch.pool_shape(3, None, None) == (3, 2)  # fewer files than cores: threads take the rest
    assert batch.pool_shape(100, None, 2) == (4, 2)
    assert batch.pool_shape(100, 2, None) == (2, 4)
    monkeypatch.setattr(batch, "available_gib", lambda: 3.0)
    assert batch.pool_shape(100, None, None) == (2, 4)  # 1.2 GB a worker
    monkeypatch.setattr(batch, "available_gib", lambda: float("inf"))  # no /proc/meminfo
    assert batch.pool_shape(100, None, None) == (8, 1)


def test_local_pool_equals_transcribe_skips_done_files_and_lists_failures(capsys, tmp_path, archive, dedr_bundle):
    out = tmp_path / "out"
    code = main(["batch", str(archive), "--out", str(out), "--bundle", str(dedr_bundle), "--workers", "2",
                 "--format", "srt", "--format", "txt"])
    err = capsys.readouterr().err
    assert code == 7, err  # finished, one file failed
    assert "smop-edge: error: " + str(archive / "day2" / "broken.mp4") + " (exit 3): cannot read" in err
    done = outputs(out)
    assert sorted(done) == ["talks/a.json", "talks/day2/b.json", "talks/face.json"]
    rec = load_recognizer(dedr_bundle)
    for name, source in [("talks/a.json", "a.wav"), ("talks/day2/b.json", "day2/b.wav"), ("talks/face.json", "face.mp4")]:
        alone = transcribe_media(rec, archive / source)
        assert (done[name]["text"], done[name]["task"]) == (alone.text, alone.task)
        assert done[name]["segments"] == [s.__dict__ for s in alone.segments]
    assert (out / "talks" / "face.srt").read_text().startswith("1\n00:00:00")
    assert (out / "talks" / "a.txt").read_text() == done["talks/a.json"]["text"] + "\n"
    summary = json.loads((out / batch.SUMMARY).read_text())
    assert (summary["ok"], summary["skipped_as_done"], summary["workers"]) == (3, 0, 2)
    assert [(f["file"].endswith("broken.mp4"), f["exit_code"]) for f in summary["failed"]] == [(True, 3)]
    assert not list(out.rglob("*.tmp"))

    # a rerun skips the three done files (untouched) and tries the failed one again
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name != batch.SUMMARY}
    assert main(["batch", str(archive), "--out", str(out), "--bundle", str(dedr_bundle), "--quiet"]) == 7
    summary = json.loads((out / batch.SUMMARY).read_text())
    assert (summary["ok"], len(summary["failed"]), summary["skipped_as_done"]) == (0, 1, 3)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # another format for done files: written from the saved results, nothing transcribed
    main(["batch", str(archive), "--out", str(out), "--bundle", str(dedr_bundle), "--quiet", "--format", "vtt"])
    summary = json.loads((out / batch.SUMMARY).read_text())
    assert (summary["ok"], summary["skipped_as_done"]) == (0, 3) and (out / "talks" / "face.vtt").exists()
    # other settings, a changed file: done again; --force redoes all
    main(["batch", str(archive), "--out", str(out), "--bundle", str(dedr_bundle), "--quiet", "--task", "asr"])
    assert json.loads((out / batch.SUMMARY).read_text())["ok"] == 3
    os.utime(archive / "a.wav", ns=(time.time_ns(), time.time_ns()))
    main(["batch", str(archive), "--out", str(out), "--bundle", str(dedr_bundle), "--quiet", "--task", "asr"])
    assert json.loads((out / batch.SUMMARY).read_text())["ok"] == 1
    main(["batch", str(archive), "--out", str(out), "--bundle", str(dedr_bundle), "--quiet", "--task", "asr",
          "--force"])
    assert json.loads((out / batch.SUMMARY).read_text())["ok"] == 3
    capsys.readouterr()


def _many(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        write_wav(root / f"clip{i:02d}.wav", tone_bursts(3.0, seed=i))
    return root


def _batch_process(inputs: Path, out: Path, bundle: Path, *flags: str) -> subprocess.Popen:
    # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &` in a script) runs with SIGINT
    # ignored, which its children inherit, and the batch would then never see the interrupt
    return subprocess.Popen([sys.executable, "-m", "smop_edge.apps.cli", "batch", str(inputs), "--out", str(out),
                             "--bundle", str(bundle), "--quiet", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_outputs(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(outputs(out)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_killed_worker_loses_no_file_and_ctrl_c_resumes(tmp_path, dedr_bundle):
    import psutil

    inputs = _many(tmp_path / "clips", 12)
    out = tmp_path / "out"
    proc = _batch_process(inputs, out, dedr_bundle, "--workers", "2")
    _wait_for_outputs(out, 1, proc)
    workers = [p for p in psutil.Process(proc.pid).children() if "resource_tracker" not in " ".join(p.cmdline())]
    assert len(workers) == 2
    workers[0].kill()  # SIGKILL: as the kernel's OOM killer would
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "warning: a worker process died" in err
    assert len(outputs(out)) == 12 and json.loads((out / batch.SUMMARY).read_text())["worker_deaths"] == 1
    reference = outputs(out)

    # Ctrl-C part way: exit 130, what was written stays, and a rerun does only the rest
    out2 = tmp_path / "out2"
    proc = _batch_process(inputs, out2, dedr_bundle, "--workers", "1")
    _wait_for_outputs(out2, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((out2 / batch.SUMMARY).read_text())
    assert summary["interrupted"] and 3 <= summary["ok"] < 12
    first = {p: p.stat().st_mtime_ns for p in out2.rglob("clip*.json")}
    proc = _batch_process(inputs, out2, dedr_bundle)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads((out2 / batch.SUMMARY).read_text())
    assert (summary["skipped_as_done"], summary["ok"]) == (len(first), 12 - len(first))
    assert {p: p.stat().st_mtime_ns for p in first} == first
    assert outputs(out2) == reference


def test_a_local_ray_cluster_with_two_nodes_gives_the_same_results(capsys, tmp_path, archive, dedr_bundle):
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    local = tmp_path / "local"
    assert main(["batch", str(archive), "--out", str(local), "--bundle", str(dedr_bundle), "--quiet"]) == 7
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "ray"
        code = main(["batch", str(archive), "--out", str(out), "--bundle", str(dedr_bundle), "--quiet",
                     "--ray", cluster.address])
        summary = json.loads((out / batch.SUMMARY).read_text())
        assert code == 7 and summary["engine"] == "ray" and summary["workers"] == 2  # one actor per node's CPU
        assert outputs(out) == outputs(local)
        assert [f["exit_code"] for f in summary["failed"]] == [3]
    finally:
        ray.shutdown()
        cluster.shutdown()
    capsys.readouterr()
