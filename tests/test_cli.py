import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smop_edge.apps.cli import main

SCRIPT = Path(sys.executable).parent / "smop-edge"


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_json_reports_config_sources_parameters_and_keys(capsys, make_checkpoint, base_tokenizer):
    path, model = make_checkpoint("tiny-jejr")
    code, out, err = run_cli(capsys, "inspect", path, "--tokenizer", base_tokenizer, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["zoo_match"] == "tiny-jejr" and data["keys"]["ok"]
    assert data["config"]["projector"]["layout"] == "JEJR"
    assert data["sources"]["projector.num_experts"] == "shape"
    assert data["sources"]["llm.heads"] == "zoo:tiny-jejr"
    total = sum(p.numel() for p in model.parameters())
    assert data["parameters"]["total"] == total
    expert = sum(p.numel() for p in model.audiovisual_proj.experts[0].parameters())
    assert data["active_parameters_per_token"] == total - 2 * expert  # E=4, k=2
    assert data["tokenizer"]["added_ids"]["<pad>"] == data["config"]["llm"]["vocab"] - 5


def test_inspect_text_and_overrides(capsys, make_checkpoint):
    path, _ = make_checkpoint("tiny-mlp")
    code, out, _ = run_cli(capsys, "inspect", path, "--audio-rate", "3", "--video-post-ln")
    assert code == 0
    assert "zoo match   tiny-mlp" in out
    line = next(l for l in out.splitlines() if l.startswith("audio_compression.rate"))
    assert line.split()[1:] == ["3", "user"]
    line = next(l for l in out.splitlines() if l.startswith("video_encoder.layer_norm_first"))
    assert line.split()[1:] == ["False", "user"]
    assert "keys        OK" in out


def test_inspect_reports_dropped_leftovers_and_fails_on_unknown_keys(capsys, tmp_path, make_checkpoint):
    _, model = make_checkpoint("tiny-vsr")
    state = dict(model.state_dict())
    state["video_encoder.mask_emb"] = torch.zeros(64)
    ok = tmp_path / "ok.pth"
    torch.save(state, ok)
    code, out, _ = run_cli(capsys, "inspect", ok)
    assert code == 0 and "dropped training leftovers: video_encoder.mask_emb" in out
    state["video_encoder.something_new"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    code, out, err = run_cli(capsys, "inspect", bad)
    assert code == 3 and "unexpected: video_encoder.something_new" in out
    assert err.count("\n") == 1 and "1 unexpected" in err


@pytest.mark.parametrize("case", ["not_a_checkpoint", "truncated", "unknown_layout", "tokenizer_size",
                                  "missing_tokenizer", "missing_checkpoint"])
def test_bad_input_gives_one_line_and_a_nonzero_exit(capsys, tmp_path, make_checkpoint, base_tokenizer, case):
    path, model = make_checkpoint("tiny-asr")
    args = ["inspect"]
    if case == "not_a_checkpoint":
        f = tmp_path / "x.pth"
        f.write_text("just text")
        args.append(f)
    elif case == "truncated":
        f = tmp_path / "x.pth"
        f.write_bytes(path.read_bytes()[:5000])
        args.append(f)
    elif case == "unknown_layout":
        f = tmp_path / "x.pth"
        torch.save({k.replace("audio_proj", "speech_adapter"): v for k, v in model.state_dict().items()}, f)
        args.append(f)
    elif case == "tokenizer_size":
        from smop_edge.models.tokenizer_builder import train_base_tokenizer

        f = tmp_path / "small.json"
        train_base_tokenizer(vocab_size=270).save(str(f))
        args += [path, "--tokenizer", f]
    elif case == "missing_tokenizer":
        args += [path, "--tokenizer", tmp_path / "absent.json"]
    else:
        args.append(tmp_path / "absent.pth")
    code, out, err = run_cli(capsys, *args)
    assert code == 3
    assert err.startswith("smop-edge: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("mix, says", [(["avsr=lots"], "TASK=SHARE"), (["avsr"], "TASK=SHARE"),
                                       (["lips=1"], "tasks are asr, vsr, avsr"), (["asr=0", "vsr=0"], "not all zero")])
def test_train_refuses_a_bad_task_mix_before_reading_anything(capsys, tmp_path, mix, says):
    code, _, err = run_cli(capsys, "train", tmp_path / "absent.jsonl", "--out", tmp_path / "run", "--task-mix", *mix)
    assert code == 2 and err.startswith("smop-edge: error: ") and err.count("\n") == 1 and says in err
    assert not (tmp_path / "run").exists()


def test_console_script_errors_without_traceback(tmp_path):
    f = tmp_path / "junk.ckpt"
    f.write_bytes(b"\x80\x04" + bytes(range(256)) * 8)  # starts like a protocol-4 pickle
    proc = subprocess.run([str(SCRIPT), "inspect", str(f)], capture_output=True, text=True)
    assert proc.returncode == 3
    assert proc.stderr.startswith("smop-edge: error:") and proc.stderr.count("\n") == 1
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_a_reader_that_goes_away_is_not_an_error():
    """`smop-edge ... | head -1`: output into a closed pipe ends the command quietly (exit 141, as SIGPIPE)."""
    bundle = Path(__file__).resolve().parents[1] / "models" / "demo" / "bundle"
    proc = subprocess.Popen([str(SCRIPT), "verify", str(bundle)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read()
    assert proc.wait() == 141, err
    assert err == ""


def test_init_writes_a_checkpoint_that_inspect_recognises(capsys, tmp_path):
    ckpt, tok = tmp_path / "sub" / "m.ckpt", tmp_path / "tok.json"
    code, out, _ = run_cli(capsys, "init", "tiny-jedr", "--out", ckpt, "--tokenizer-out", tok, "--dtype", "bf16")
    assert code == 0 and ckpt.exists()
    code, out, _ = run_cli(capsys, "inspect", ckpt, "--tokenizer", tok, "--json")
    data = json.loads(out)
    assert code == 0 and data["format"] == "lightning" and data["zoo_match"] == "tiny-jedr"
    assert set(data["dtypes"]["llm"]) == {"bfloat16"}
    code, _, err = run_cli(capsys, "init", "no-such-model", "--out", tmp_path / "y.pth")
    assert code == 2 and "unknown zoo model" in err
