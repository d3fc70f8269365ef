"""Seeded mutation fuzz of what users feed the toolkit: media files (the demo samples and a wav, with bytes
flipped, zeroed, cut, duplicated or inserted) through `smop-edge transcribe`, and the demo bundle's manifest
(a field deleted, retyped, or given a hostile value; its digest resealed, as someone rewriting the bundle
would) through `smop-edge verify` (load, then the self-test through every stage). A case passes when it ends in a documented exit code (0, 2-6) with at most
one line on stderr; a crash is exit 1 (an internal error), anything escaping, or a traceback.

    .venv/bin/python scripts/fuzz.py --media 200 --manifests 1000 --seed 0

Prints one JSON object: cases per target, outcomes by exit code, and each crash with how to replay it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from smop_edge.apps.cli import main as cli
from smop_edge.runtime import DEMO_BUNDLE
from smop_edge.runtime.errors import SmopEdgeError
from smop_edge.runtime.media import write_audio

HOSTILE_VALUES = [None, 0, -1, 1e308, "", "../manifest.json", "/etc/passwd", "a/b", [], {}, True, "x" * 10000]


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """One random damage to a file's bytes."""
    b = bytearray(data)
    kind = rng.integers(5)
    at = int(rng.integers(len(b)))
    if kind == 0:  # flip up to 64 bytes
        for k in rng.integers(len(b), size=int(rng.integers(1, 65))):
            b[k] ^= int(rng.integers(1, 256))
    elif kind == 1:  # cut
        del b[at:]
    elif kind == 2:  # zero a range
        b[at: at + int(rng.integers(1, 4096))] = bytes(min(len(b) - at, int(rng.integers(1, 4096))))
    elif kind == 3:  # duplicate a chunk in place
        chunk = b[at: at + int(rng.integers(1, 4096))]
        b[at:at] = chunk
    else:  # insert random bytes
        b[at:at] = rng.integers(0, 256, int(rng.integers(1, 512)), dtype=np.uint8).tobytes()
    return bytes(b)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON tree."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def mutate_manifest(data: dict, rng: np.random.Generator) -> tuple[dict, str]:
    """One field of the manifest deleted, or replaced by a hostile value; and what was done."""
    data = copy.deepcopy(data)
    paths = _paths(data)
    path = paths[int(rng.integers(len(paths)))]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    where = ".".join(map(str, path))
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
        return data, f"deleted {where}"
    value = copy.deepcopy(HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))])
    parent[path[-1]] = value
    return data, f"{where} = {json.dumps(value)[:40]}"


def _run(fn) -> tuple[int, str]:
    """Exit code and stderr of `fn()`; an exception that escapes is a crash (code -1)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = fn()
    except SmopEdgeError as exc:  # the API's way of saying what the CLI says with a code
        return exc.exit_code, str(exc)
    except Exception as exc:  # noqa: BLE001 (that is the finding)
        return -1, f"{type(exc).__name__}: {exc}"
    return code, err.getvalue()


def _verdict(code: int, err: str) -> bool:
    lines = [line for line in err.splitlines() if line.startswith("smop-edge:")]
    return code in (0, 2, 3, 4, 5, 6) and "Traceback" not in err and len(lines) <= 1


def fuzz_media(n: int, rng: np.random.Generator, work: Path) -> dict[str, Any]:
    sources = sorted((DEMO_BUNDLE.parent / "samples").glob("*.mp4"))
    wav = write_audio(work / "tone.wav", (0.2 * np.sin(np.arange(16000) / 7)).astype(np.float32))
    sources.append(wav)
    outcomes, crashes = Counter(), []
    for i in range(n):
        src = sources[i % len(sources)]
        case = work / f"case{src.suffix}"
        case.write_bytes(mutate_bytes(src.read_bytes(), rng))
        code, err = _run(lambda: cli(["transcribe", str(case), "--quiet", "--max-new-tokens", "8"]))
        outcomes[code] += 1
        if not _verdict(code, err):
            kept = work / f"crash-{i}{src.suffix}"
            shutil.copy(case, kept)
            crashes.append({"case": i, "source": src.name, "code": code, "stderr": err[-500:], "file": str(kept)})
    return {"cases": n, "outcomes": dict(sorted(outcomes.items())), "crashes": crashes}


def fuzz_manifests(n: int, rng: np.random.Generator, work: Path) -> dict[str, Any]:
    bundle = work / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle)
    original = json.loads((bundle / "manifest.json").read_text())
    outcomes, crashes = Counter(), []
    for i in range(n):
        mutated, change = mutate_manifest(original, rng)
        text = json.dumps(mutated)
        (bundle / "manifest.json").write_text(text)
        (bundle / "manifest.json.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")
        code, err = _run(lambda: cli(["verify", str(bundle)]))
        outcomes[code] += 1
        if code not in (0, 4) or not _verdict(code, err):
            crashes.append({"case": i, "code": code, "change": change, "error": err[-500:]})
    return {"cases": n, "outcomes": dict(sorted(outcomes.items())), "crashes": crashes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=int, default=200, help="mutated media cases")
    parser.add_argument("--manifests", type=int, default=1000, help="mutated manifest cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="folder for the crashing inputs (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(args.seed)
        report = {"seed": args.seed, "media": fuzz_media(args.media, rng, work),
                  "manifests": fuzz_manifests(args.manifests, rng, work)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
