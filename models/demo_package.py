"""Assemble the shipped demo model (models/demo/): checkpoint, tokenizer, int8-expert bundle, training
curves (drawn, and the log, so that later runs can be compared step by step) and a few held-out
sample clips with their transcripts.

Samples are, for each TTS engine, the longest held-out clip (in words; the first of equals) that the
shipped bundle transcribes right in the AVSR evaluation (their transcripts are tested); the README
reports the WER over all of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .corpus import read_manifest

FILES = ("checkpoint.pth", "tokenizer.json", "curves.png", "train_log.jsonl")  # the curves as numbers too


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


def package(run: str | Path, bundle: str | Path, manifest: str | Path, eval_json: str | Path,
            out: str | Path) -> Path:
    """Copy the run's files, the bundle and the picked samples into `out` (replacing what is there)."""
    run, out = Path(run), Path(out)
    samples = pick_samples(manifest, eval_json)
    if not samples:
        raise ValueError(f"no correctly transcribed clean utterance in {eval_json}")
    if out.exists():
        shutil.rmtree(out)
    (out / "samples").mkdir(parents=True)
    for name in FILES:
        shutil.copy2(run / name, out / name)
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
    parser.add_argument("run", help="training run folder (checkpoint.pth, tokenizer.json, curves.png, train_log.jsonl)")
    parser.add_argument("bundle", help="exported int8-expert bundle")
    parser.add_argument("manifest", help="held-out manifest the evaluation ran on")
    parser.add_argument("eval_json", help="its `smop-edge eval --task avsr --json` report (with a clean condition)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "demo"))
    a = parser.parse_args()
    print(package(a.run, a.bundle, a.manifest, a.eval_json, a.out))
