"""`smop-edge bench`: FLOP counts against torch's counter, the machine-limit kernels, the one-factor
plan, and a whole (small) run on a tiny bundle: exports, per-process memory, ratios, caching."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from smop_edge.apps import bench, machine_limits
from smop_edge.apps.cli import main


def test_encoder_flops_match_torch_flop_counter():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from smop_edge.models import flops, zoo
    from smop_edge.models.checkpoint import random_init

    cfg = zoo.get("demo-dedr")
    model = random_init(cfg, 0).eval()
    mel_frames, n_frames = 200, 30
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode_audio(torch.randn(1, cfg.audio_encoder.mel_bins, mel_frames), mel_frames // 2, False)
    a = cfg.audio_encoder
    # the counter sees convolutions and linear layers; Whisper's CPU attention kernel goes uncounted
    attention = a.layers * 4 * (mel_frames // 2) ** 2 * a.d_model
    assert flops.audio_encoder(a, mel_frames) == pytest.approx(counter.get_total_flops() + attention, rel=0.01)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode_video(torch.randn(1, n_frames, 88, 88))
    assert flops.video_encoder(cfg.video_encoder, n_frames) == pytest.approx(counter.get_total_flops(), rel=0.01)


@pytest.mark.parametrize("int8", [False, True])
def test_machine_limit_matmul_kernels_compute_the_product(int8):
    n = 64
    a, b = machine_limits.matmul_operands(n, int8, np.random.default_rng(0))
    want = a.astype(np.int64) @ b.astype(np.int64) if int8 else a @ b
    (got,) = machine_limits._matmul_session(n, int8, threads=1).run(None, {"a": a, "b": b})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert machine_limits.peak_matmul(n=128, int8=int8, threads=1, repeats=2) > 0.1
    assert machine_limits.memory_bandwidth(megabytes=64, repeats=2) > 0.1
    assert machine_limits.memory_bandwidth(megabytes=64, repeats=2, streams=2) > 0.1


def test_each_configuration_varies_one_factor_from_the_default():
    from smop_edge.runtime.manifest import resolve_backend

    configs = bench.plan_configs("fast", ["torch", "onnxruntime", "openvino"])
    default = configs[0]
    assert default.name == "default" and (default.engine, default.experts, default.llm, default.beams) == \
        (resolve_backend("auto", "onnx"), "int8", "int8", 1)  # what `--backend auto` runs here
    assert {c.engine for c in configs} == {"torch", "onnxruntime", "openvino"}  # the other engine is a factor
    factors = ("engine", "model", "experts", "llm", "encoders", "audio_mode", "exact", "precision", "beams",
               "fixed_steps")
    for c in configs[1:]:
        changed = {f for f in factors if getattr(c, f) != getattr(default, f)}
        if c.name == "torch-fp32":  # the reference is fp32 by definition
            assert changed == {"engine", "experts", "llm"} and c.audio_mode == default.audio_mode
        elif c.name == "fp32":
            assert changed == {"experts", "llm"}
        elif c.name == "mlp-fixed":  # compared with smop-fixed, which differs from it in the model only
            assert changed == {"model", "fixed_steps"}
        elif c.name == "fastest":  # the fastest settings measured, together
            assert changed == {"precision", "exact", "llm"} and default.engine == "openvino"
        else:
            assert len(changed) == 1, (c.name, changed)
    assert {c.engine for c in bench.plan_configs("fast", ["onnxruntime"])} == {"onnxruntime"}
    assert {c.engine for c in bench.plan_configs("fast", ["openvino"], fmt="ort")} == set()  # ORT format: ORT only
    assert next(c for c in configs if c.name == "encoders-int8").bundle_key() != default.bundle_key()
    smop = {"name": "x", "projector": {"kind": "smop", "layout": "DEDR"}}
    assert bench.variant_config(smop, "mlp")["projector"]["kind"] == "mlp"
    assert bench.variant_config(smop, "jejr")["projector"] == {"kind": "smop", "layout": "JEJR"}
    # random weights: every configuration decodes a fixed number of tokens, the default is the SMoP side
    random = bench.plan_configs("faithful", ["onnxruntime"], random_init=True, layouts=("DEDR",))
    assert all(c.fixed_steps for c in random) and "smop-fixed" not in {c.name for c in random}
    assert next(c for c in random if c.name == "dedr-fixed").model == "dedr"


@pytest.mark.parametrize("args", [["--seconds", "0"], ["--backends", "tflite"], ["--repeats", "0"],
                                  ["--configs", "nonsense", "--backends", "onnxruntime"], ["--zoo", "tiny-jejr"],
                                  ["--zoo", "tiny-jejr", "--random-init", "--bundle", "x"],
                                  ["--layouts", "XYZ"], ["--audio-mode", "fast"]])
def test_bad_arguments_exit_2(capsys, tmp_path, args):
    assert main(["bench", "--work", str(tmp_path), *args]) == 2
    assert "smop-edge: error:" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory, dedr_bundle, make_checkpoint, tiny_corpus):
    """One run on the tiny fp32 DEDR bundle (faithful audio) with its held-out clips as samples."""
    work = tmp_path_factory.mktemp("bench")
    ckpt, _ = make_checkpoint("tiny-dedr")
    common = ["bench", "--bundle", str(dedr_bundle), "--checkpoint", str(ckpt), "--samples",
              str(tiny_corpus / "test" / "manifest.jsonl"), "--seconds", "1", "--rounds", "1", "--repeats", "2",
              "--decode-steps", "5", "--threads", "1", "--work", str(work)]
    return work, common


def test_bench_runs_each_configuration_in_its_own_process(capsys, tiny_bench):
    work, common = tiny_bench
    plot = work / "stages.png"
    code = main([*common, "--backends", "torch,onnxruntime", "--configs", "fp32,smop-fixed,mlp-fixed,beam4",
                 "--json", "--plot", str(plot)])
    out = capsys.readouterr()
    assert code == 0, out.err
    rep = json.loads(out.out)
    configs = rep["configs"]
    assert set(configs) == {"default", "torch-fp32", "fp32", "smop-fixed", "mlp-fixed", "beam4"}
    assert out.err.count("bench: exporting") == 2  # the int8 default and the MLP baseline; fp32 is the bundle
    # the given bundle serves fp32; the variants were exported with what they claim
    assert configs["fp32"]["bundle"] == rep["source"]
    mlp = Path(configs["mlp-fixed"]["bundle"])
    manifest = json.loads((mlp / "manifest.json").read_text())
    assert manifest["model"]["projector"]["kind"] == "mlp" and manifest["quantization"]["llm"] == "int8"
    # the MLP variant links the encoder and decoder graphs of the int8 default instead of rebuilding them
    default = Path(configs["default"]["bundle"])
    for stage in ("audio_encoder", "video_encoder", "decoder"):
        assert (mlp / manifest["stages"][stage]["file"]).stat().st_ino == \
            (default / manifest["stages"][stage]["file"]).stat().st_ino
    assert (mlp / "projector.onnx").stat().st_ino != (default / "projector.onnx").stat().st_ino
    # only the torch worker imported torch, and its peak memory is its own (torch alone is > 100 MB)
    assert [n for n, c in configs.items() if c["torch_imported"]] == ["torch-fp32"]
    assert configs["torch-fp32"]["peak_rss_mb"] > configs["fp32"]["peak_rss_mb"] + 100
    for name, c in configs.items():
        x = c["inputs"]["1s"]
        assert x["total"]["median"] > 0 and x["rtf_with_media"] > x["rtf"] > 0
        media = rep["media"]["1s"]  # the lip crop decodes the video itself: its decoding is counted once
        assert x["rtf_with_media"] == pytest.approx(
            (x["total"]["median"] + media["audio_decode"]["median"] + media["lip_crop"]["median"]) / 1000, abs=2e-4)
        assert media["video_decode"]["median"] > 0
        assert {"features", "audio_encoder", "video_encoder", "projector", "prefill"} <= set(x["stages"])
        assert x["total"]["median"] >= x["stages"]["prefill"]["median"] + x["stages"]["audio_encoder"]["median"]
        if c["config"]["fixed_steps"]:
            assert x["tokens"] == 5 and x["decode_token"]["median"] > 0
    assert bench._quality_cells(configs["torch-fp32"], "-")[0] == "ref"  # the reference, not compared with itself
    # fp32 graphs reproduce the fp32 reference's transcripts; the samples were transcribed
    assert configs["fp32"]["agreement"]["transcripts_equal"] == configs["fp32"]["agreement"]["inputs"] == 3
    assert configs["fp32"]["samples"]["words"] > 0 and "samples" not in configs["mlp-fixed"]
    assert rep["speedup_vs_torch"] > 0 and rep["same_precision_ratio"] > 0 and rep["smop_over_mlp"] > 0
    assert rep["bandwidth_gbps"] > 0 and rep["peak_gflops_fp32"] > 0 and rep["peak_gops_int8"] > 0
    assert rep["decode"]["weight_bytes"] > 0 and set(rep["encoders"]) == {"audio_encoder", "video_encoder"}
    assert set(rep["targets"]) == {"deployment_3x_wer_0.5pp", "smop_within_5pct_of_mlp",
                                   "decode_within_1.5x_of_bandwidth"}
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_bench_reuses_exported_variants_and_prints_a_table(capsys, tiny_bench):
    _, common = tiny_bench
    args = [*common, "--backends", "onnxruntime", "--configs", "mlp-fixed"]
    assert main(args) == 0  # exports what an earlier test has not
    out = capsys.readouterr()
    assert "mlp-fixed" in out.out and "SMoP / MLP projector" not in out.out  # smop-fixed was not run
    assert "target decode_within_1.5x_of_bandwidth:" in out.out
    assert main([*args, "--markdown"]) == 0
    out = capsys.readouterr()
    assert "exporting" not in out.err  # kept from the first run
    rows = [line for line in out.out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| default", "| mlp-fixed"]  # the README's table
    default, mlp = (r.rstrip(" |").split(" | ") for r in rows[1:])
    assert default[-2] == mlp[-2] == "–"  # agreement needs the torch reference, not run here
    assert re.fullmatch(r"\d+\.\d %", default[-1]) and mlp[-1] == "–"  # fixed decode steps: no sample WER


def test_zoo_random_weights_share_graphs_and_decode_fixed_steps(capsys, tmp_path, tiny_corpus):
    """`--zoo NAME --random-init`: a random-weight checkpoint made once, every configuration decoding
    exactly --decode-steps tokens, the SMoP layouts compared with the MLP baseline."""
    args = ["bench", "--zoo", "tiny-jejr", "--random-init", "--layouts", "DEDR", "--samples",
            str(tiny_corpus / "test" / "manifest.jsonl"), "--seconds", "1", "--rounds", "1", "--repeats", "1",
            "--decode-steps", "4", "--threads", "1", "--backends", "torch,onnxruntime", "--work", str(tmp_path),
            "--configs", "fp32,mlp-fixed,dedr-fixed", "--json"]
    assert main(args) == 0
    out = capsys.readouterr()
    rep = json.loads(out.out)
    assert rep["random_weights"] and rep["model"] == "tiny-jejr" and "writing random weights" in out.err
    assert all(c["inputs"]["1s"]["tokens"] == 4 for c in rep["configs"].values())
    assert all("samples" not in c for c in rep["configs"].values())  # no transcripts to score
    agree = rep["configs"]["fp32"]["agreement"]
    assert agree["transcripts_equal"] == agree["inputs"] == 1
    assert set(rep["layouts_over_mlp"]) == {"dedr"} and rep["smop_over_mlp"] > 0
    pooled = rep["projector_pooled"]  # the low-noise estimator: shared stages pooled, each projector its own
    assert set(pooled["over_mlp"]) == {"smop", "dedr"} and pooled["shared_ms"] > 0 and pooled["noise"] >= 0
    proj = {k: rep["configs"][n]["inputs"]["1s"]["stages"]["projector"]["median"]
            for k, n in (("smop", "default"), ("mlp", "mlp-fixed"))}
    assert pooled["projector_ms"]["smop"] == proj["smop"]
    assert pooled["over_mlp"]["smop"] == pytest.approx(
        (pooled["shared_ms"] + proj["smop"]) / (pooled["shared_ms"] + proj["mlp"]), abs=1e-4)
    dedr = json.loads((Path(rep["configs"]["dedr-fixed"]["bundle"]) / "manifest.json").read_text())
    assert dedr["model"]["projector"]["layout"] == "DEDR" and dedr["parity"] is None
    assert main(["verify", rep["configs"]["dedr-fixed"]["bundle"]]) == 4  # no self-test reference to check
    assert "exported without parity" in capsys.readouterr().err
    assert main(args) == 0
    assert "writing random weights" not in capsys.readouterr().err  # made once


def test_exports_are_keyed_by_the_checkpoints_content(tmp_path):
    """A checkpoint rewritten with other weights of the same size and time gets new exports."""
    import os

    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"a" * 1000)
    source = bench.Source({"name": "m"}, ckpt, tmp_path / "tok.json", "faithful", None, False)
    before, stat = source.folder, ckpt.stat()
    ckpt.write_bytes(b"b" * 1000)
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.folder != before and source.folder.startswith("m-")


def test_the_pi_preset_runs_a_bundle_alone_with_board_notes(capsys, tmp_path):
    """A Pi's lean install has the bundle but no checkpoint and no torch: the preset times the bundle alone on
    ONNX Runtime; a torch row asked for beside it is reported as impossible, not a crash."""
    import shutil

    from smop_edge.runtime import DEMO_BUNDLE

    bundle = shutil.copytree(DEMO_BUNDLE, tmp_path / "bundle")  # nothing next to it: no checkpoint
    assert main(["bench", "--preset", "pi", "--bundle", str(bundle), "--samples",
                 str(DEMO_BUNDLE.parent / "samples" / "manifest.jsonl"), "--backends", "onnxruntime,torch",
                 "--repeats", "1", "--json", "--quiet", "--work", str(tmp_path / "work")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert list(rep["configs"]) == ["default"] and list(rep["configs"]["default"]["inputs"])[0] == "5s"
    assert rep["rounds"] == 1 and "checkpoint" in rep["failed"]["torch-fp32"]
    assert set(rep["board"]) == {"before", "after"} and rep["board"]["before"]["cores"] >= 1
    text = bench.render_text(rep)
    assert "board before:" in text and "torch-fp32: no figures" in text


def test_the_peer_row_reads_the_same_audio(capsys, tmp_path):
    """Whisper tiny.en (faster-whisper) beside the default on the same inputs: audio only (no lip crop in its
    RTF with media), its free text scored as domain words, compared end to end without media."""
    pytest.importorskip("faster_whisper")
    from smop_edge.apps.peer import domain_words

    assert main(["bench", "--backends", "onnxruntime,faster-whisper", "--configs", "peer-whisper", "--seconds", "2",
                 "--rounds", "1", "--repeats", "1", "--json", "--quiet", "--work", str(tmp_path)]) == 0
    rep = json.loads(capsys.readouterr().out)
    peer, default = rep["configs"]["peer-whisper"], rep["configs"]["default"]
    x, media = peer["inputs"]["2s"], rep["media"]["2s"]
    assert x["stages"] == {} and x["total"]["median"] > 0 and not peer["torch_imported"]
    assert x["rtf_with_media"] == pytest.approx((x["total"]["median"] + media["audio_decode"]["median"]) / 2000,
                                                abs=2e-4)
    assert "agreement" not in peer and peer["samples"]["words"] == default["samples"]["words"] > 0
    assert all(t == domain_words(t) for t in peer["samples"]["texts"].values())
    assert rep["over_peer"] == pytest.approx(default["inputs"]["2s"]["total"]["median"] / x["total"]["median"],
                                             rel=1e-2)
    assert "no_slower_than_peer" in rep["targets"]
    assert "peer-whisper" in bench.render_markdown(rep) and "the peer" in bench.render_text(rep)
    assert main(["bench", "--backends", "openvino,nonesuch"]) == 2
