"""Assemble the shipped demo model (models/demo/): checkpoint, tokenizer, int8-expert bundle, training
curves (drawn, and the log, so that later runs can be compared step by step) and a few held-out
sample clips with their transcripts.

A model trained in stages (a run, then `train --init` runs from its checkpoint) ships the last stage's
checkpoint and tokenizer, and one log over all stages: each stage's steps follow on from the one before.

Samples are, for each TTS engine, the longest held-out clip (in words; the first of equals) that the
shipped bundle transcribes right in the AVSR evaluation (their transcripts are tested); the README
reports the WER over all of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import curves
from .corpus import read_manifest

FILES = ("checkpoint.pth", "tokenizer.json")  # from the last stage
LOG, CURVES = "train_log.jsonl", "curves.png"  # over all stages (the curves as numbers too)


def pick_samples(manifest: str | Path, eval_json: str | Path, per_engine: int = 1) -> list[dict]:
    """Manifest rows of clean, correctly transcribed utterances in `eval_json` (an `eval --json`
    report): the `per_engine` longest of each TTS engine (in words; manifest order among equals), so
    that the demo shows a string, not a lone letter."""
    report = json.loads(Path(eval_json).read_text())
    clean = next((c for c in report["conditions"] if c["snr"] is None), None)
    if clean is None:
        raise ValueError(f"{eval_json} has no clean condition")
    right = {r["id"] for r in clean["rows"] if r["errors"] == 0}
    picked: dict[str, list[dict]] = {}
    for row in read_manifest(manifest):
        if row["id"] in right:
            picked.setdefault(row["voice"].split(":")[0], []).append(row)
    return [row for rows in picked.values()
            for row in sorted(rows, key=lambda r: -len(r["text"].split()))[:per_engine]]


def joined_log(runs: list[Path]) -> list[dict]:
    """The `train_log.jsonl` rows of `runs` (training stages, in order) as one run: each stage's steps
    offset by the last step of the stages before it, and its rows marked with its `stage` (folder name)."""
    rows, offset = [], 0
    for run in runs:
        stage = [json.loads(line) for line in (run / LOG).read_text().splitlines() if line.strip()]
        rows += [{**r, "step": r["step"] + offset, "stage": run.name} for r in stage]
        offset += max((r["step"] for r in stage), default=0)
    return rows


def package(runs: str | Path | list[str | Path], bundle: str | Path, manifest: str | Path, eval_json: str | Path,
            out: str | Path) -> Path:
    """Copy the last run's checkpoint and tokenizer, all runs' joined log and its curves, the bundle and
    the picked samples into `out` (replacing what is there). `runs`: one run folder, or the stages in order."""
    runs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    out = Path(out)
    samples = pick_samples(manifest, eval_json)
    if not samples:
        raise ValueError(f"no correctly transcribed clean utterance in {eval_json}")
    if out.exists():
        shutil.rmtree(out)
    (out / "samples").mkdir(parents=True)
    for name in FILES:
        shutil.copy2(runs[-1] / name, out / name)
    (out / LOG).write_text("".join(json.dumps(r) + "\n" for r in joined_log(runs)))
    curves.plot(out / LOG, out / CURVES)
    shutil.copytree(bundle, out / "bundle")
    lines = []
    for i, row in enumerate(samples, 1):
        name = f"sample-{i}.mp4"
        shutil.copy2(row["file"], out / "samples" / name)
        lines.append(json.dumps({"id": row["id"], "path": name, "text": row["text"], "voice": row["voice"],
                                 "face": row["face"], "split": row["split"], "seconds": row["seconds"]}))
    (out / "samples" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Assemble models/demo/ from a training run and its bundle.")
    parser.add_argument("run", nargs="+", help="training run folder(s) (checkpoint.pth, tokenizer.json, train_log.jsonl): "
                        "a run and the `train --init` stages that continued it, in order")
    parser.add_argument("bundle", help="exported int8-expert bundle")
    parser.add_argument("manifest", help="held-out manifest the evaluation ran on")
    parser.add_argument("eval_json", help="its `smop-edge eval --task avsr --json` report (with a clean condition)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "models" / "demo"))
    a = parser.parse_args()
    print(package(a.run, a.bundle, a.manifest, a.eval_json, a.out))
