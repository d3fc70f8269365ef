"""The exit-code table of docs/cli.md, command by command: each command's failures end in the code the
table gives, with one line on stderr and no traceback (the costlier cases live beside their features:
parity 6 in test_export, unsuitable media 5 in test_transcribe and test_fuzz, bundles 4 in test_manifest)."""

import pytest

from conftest import tone_bursts, write_wav
from smop_edge.apps import cli
from smop_edge.apps.cli import main
from smop_edge.runtime import DEMO_BUNDLE

SAMPLE = str(DEMO_BUNDLE.parent / "samples" / "sample-2.mp4")


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("codes")
    (root / "notes.pth").write_text("hello, this is not a model\n")
    (root / "empty.jsonl").write_text("")
    (root / "bad.jsonl").write_text("{not json\n")
    write_wav(root / "voice.wav", tone_bursts(1.0))
    (root / "voice.jsonl").write_text('{"path": "voice.wav", "text": "one"}\n')
    return root


CASES = [  # (command line with {root} for the fixture folder, code, what stderr says)
    ("inspect {root}/absent.pth", 3, "not found"),
    ("inspect {root}/notes.pth", 3, "not a PyTorch checkpoint"),
    ("init no-such-model --out {root}/x.pth", 2, "no-such-model"),
    ("export {root}/notes.pth --out {root}/b", 2, "--tokenizer is required"),
    ("export {root}/notes.pth --tokenizer {root}/notes.pth --out {root}/b", 3, "not a PyTorch checkpoint"),
    ("verify {root}", 4, "not a smop-edge bundle"),
    ("transcribe {root}/absent.mp4", 3, "file not found"),
    ("transcribe {root}/voice.wav --task vsr", 5, "needs video"),
    ("transcribe " + SAMPLE + " --bundle {root}", 4, "not a smop-edge bundle"),
    ("crop {root}/absent.mp4 --out {root}/crops", 3, "file not found"),
    ("crop {root}/voice.wav --out {root}/crops", 5, "has no video track"),
    ("batch {root}/absent.mp4 --out {root}/o", 3, "not found"),
    ("batch {root}/bad.jsonl --out {root}/o", 3, "not a readable manifest"),
    ("batch {root}/empty.jsonl --out {root}/o", 2, "no media files"),
    ("batch {root}/voice.wav --out {root}/o --workers 0", 2, "--workers"),
    ("batch {root}/voice.wav --out {root}/o --bundle {root}", 4, "not a smop-edge bundle"),
    ("batch {root}/voice.wav {root}/notes.pth --out {root}/o --quiet", 7, "notes.pth (exit 3): cannot read"),
    ("live --input {root}/absent.mp4", 3, "file not found"),
    ("synth --out {root}/c --n 0", 2, "--n"),
    ("train {root}/absent.jsonl --out {root}/run", 2, "no manifest"),
    ("eval {root}/bad.jsonl", 2, "bad.jsonl:1"),
    ("eval {root}/voice.jsonl --task vsr", 5, "needs video, the file has none"),
    ("bench --zoo no-such-model --random-init", 2, "unknown zoo model 'no-such-model'"),
]


@pytest.mark.parametrize("line, code, message", CASES, ids=[c[0].split()[0] + f"-{c[1]}-{i}" for i, c in
                                                             enumerate(CASES)])
def test_each_command_fails_with_its_documented_code(files, line, code, message, capsys):
    if line.split()[0] in ("inspect", "init", "export", "train", "bench") and not _have("torch"):
        code, message = 2, "needs the [export] extra"  # a runtime-only environment says what to install
    assert main(line.format(root=files).split()) == code
    err = capsys.readouterr().err
    assert message in err and err.startswith("smop-edge: error:") and "Traceback" not in err, err


@pytest.mark.parametrize("raised, code, message", [
    (KeyboardInterrupt, 130, "smop-edge: interrupted"),
    (RuntimeError("boom"), 1, "internal error: RuntimeError: boom"),
])
def test_interrupts_and_bugs_have_their_own_codes(monkeypatch, capsys, raised, code, message):
    def run(_args):
        raise raised

    parser = cli.build_parser()
    args = parser.parse_args(["verify", "x"])
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, a: args})())
    monkeypatch.setattr(args, "func", run, raising=False)
    assert main(["verify", "x"]) == code
    assert message in capsys.readouterr().err


def test_a_closed_pipe_is_141_and_quiet():
    import subprocess
    import sys

    # the reader closes its end at once; transcribe's output then meets a closed pipe
    proc = subprocess.run(f"{sys.executable} -m smop_edge.apps.cli transcribe {SAMPLE} --quiet --format txt "
                          "| (exec 0<&-; true); echo ${PIPESTATUS[0]}", shell=True, capture_output=True, text=True,
                          executable="/bin/bash")
    assert proc.stdout.strip() == "141" and "Traceback" not in proc.stderr, proc.stderr
