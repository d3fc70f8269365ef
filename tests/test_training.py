"""The demo training recipe on a tiny model: the loss falls, runs resume, the checkpoint is official."""

import json
import shutil
from dataclasses import replace

import pytest

from smop_edge.recipe.training import TrainOptions, train


@pytest.fixture(scope="module")
def trained(tiny_corpus, tiny_word_bank, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    opts = TrainOptions(model="tiny-dedr", steps=30, batch_size=4, lr=3e-3, warmup=5, save_every=10, log_every=5,
                        eval_every=30, eval_size=2, asr_first=10, noise_delay=5, noise_ramp=10, ctc_weight=0.3,
                        snapshots=(20,))
    lines = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("step 25/"):  # the saved state still holds step 20's weights
            shutil.copy(out / "train_state.pt", out / "state-20.pt")

    final = train(str(tiny_corpus / "train" / "manifest.jsonl"), out, opts,
                  dev_manifest=str(tiny_corpus / "test" / "manifest.jsonl"), workers=1, word_bank=str(tiny_word_bank),
                  log=log)
    return out, final, opts, lines


def test_loss_falls_and_curves_are_logged(trained):
    out, final, _, lines = trained
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "ce" in r]
    assert [r["step"] for r in steps] == [5, 10, 15, 20, 25, 30]
    # 5-step windows of mixed tasks (the mixed phase restarts the schedule at step 10): the loss falls
    assert min(r["ce"] for r in steps[1:]) < 0.9 * steps[0]["ce"]
    assert "lb" in steps[0] and "z" in steps[0]  # SMoP auxiliary losses are part of the objective
    # composed utterances (ASR batches only) bring the framewise word loss; corpus-only windows have none
    assert "frame" in steps[0] and 0 < steps[0]["frame"] < 10
    assert "ctc" in steps[0]  # the optional auxiliary CTC (off by default)
    # after the ASR-only steps, video batches learn the audio head's words framewise
    assert "video_frame" not in steps[1] and all(0 < r["video_frame"] < 10 for r in steps[2:])
    # each window counts the tasks it drew: ASR only for the first 10 steps, then the mix's video tasks too
    assert all(sum(r["tasks"].values()) == 5 for r in steps) and set(steps[1]["tasks"]) == {"asr"}
    assert {t for r in steps[2:] for t in r["tasks"]} == {"asr", "vsr", "avsr"}
    dev = [r for r in rows if "dev_wer" in r]
    assert dev and set(dev[0]["dev_wer"]) == {"asr", "vsr", "avsr"}
    assert any("training utterances" in line for line in lines)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_has_official_keys_and_reloads(trained):
    from smop_edge.models.checkpoint import load_model

    _, final, _, _ = trained
    model, report = load_model(final)
    assert model.cfg.name == "tiny-dedr" and model.cfg.projector.layout == "DEDR"
    assert any(k.startswith("audio_proj.experts.0.") for k in model.state_dict())


def test_snapshot_holds_the_weights_of_its_step(trained):
    import torch

    from smop_edge.models.checkpoint import load_model

    out, final, _, _ = trained
    snapshot, _ = load_model(out / "checkpoint-20.pth")
    at_20 = torch.load(out / "state-20.pt", weights_only=True)["model"]
    last, _ = load_model(final)
    assert snapshot.state_dict().keys() == at_20.keys()
    assert all(torch.equal(v, at_20[k]) for k, v in snapshot.state_dict().items())
    assert not all(torch.equal(v, last.state_dict()[k]) for k, v in snapshot.state_dict().items())


def test_rerun_resumes_from_the_saved_state(trained, tiny_corpus):
    out, _, opts, _ = trained
    opts.steps = 35
    with (out / "train_log.jsonl").open("a") as f:  # as if the last run had logged past its saved state
        f.write('{"step": 33, "ce": 1.0}\n')
    lines = []
    train(str(tiny_corpus / "train" / "manifest.jsonl"), out, opts, workers=1, log=lines.append)
    assert "resumed at step 30" in lines
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 35 and 33 not in steps


def test_fine_tuning_starts_from_the_checkpoint_and_keeps_its_vocabulary(trained, tiny_corpus, tmp_path):
    """`init`: the run starts from the trained weights (at learning rate 0 it ends there exactly) with the
    checkpoint's tokenizer; an ASR-only run crops no mouths; a checkpoint of another model is refused."""
    import torch

    from smop_edge.runtime.errors import CheckpointError

    _, final, _, _ = trained
    opts = TrainOptions(model="tiny-dedr", steps=3, batch_size=2, lr=0.0, warmup=1, log_every=1, eval_every=100,
                        asr_first=3).fine_tuning(str(final))
    assert (opts.curriculum, opts.noise_delay, opts.noise_ramp) == (0, 0, 0) and not opts.trains_video
    manifest, crops = str(tiny_corpus / "train" / "manifest.jsonl"), tmp_path / "crops"
    lines = []
    train(manifest, tmp_path / "tuned", opts, crop_cache=str(crops), workers=1, log=lines.append)
    assert f"starting from {final}" in lines and not crops.exists()
    assert (tmp_path / "tuned" / "tokenizer.json").read_bytes() == (final.parent / "tokenizer.json").read_bytes()
    start, end = torch.load(final), torch.load(tmp_path / "tuned" / "checkpoint.pth")
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    with pytest.raises(CheckpointError, match="not a tiny-jedr model"):
        train(manifest, tmp_path / "other", TrainOptions(model="tiny-jedr", steps=1, asr_first=1).fine_tuning(
            str(final)), workers=1, log=lambda _: None)


def test_lips_from_another_checkpoint(trained, tiny_corpus, tmp_path, make_checkpoint):
    """`init_lips`: the lip encoder starts from another checkpoint's (at learning rate 0 it ends there), the
    rest from `init`; a checkpoint without that encoder is refused."""
    import torch

    from smop_edge.runtime.errors import CheckpointError

    _, final, _, _ = trained
    lips, _ = make_checkpoint("tiny-dedr", seed=3)
    opts = replace(TrainOptions(model="tiny-dedr", steps=1, batch_size=2, lr=0.0, warmup=1, log_every=1,
                                eval_every=100, asr_first=1).fine_tuning(str(final)), init_lips=str(lips))
    lines = []
    manifest = str(tiny_corpus / "train" / "manifest.jsonl")
    train(manifest, tmp_path / "tuned", opts, workers=1, log=lines.append)
    assert f"the lip encoder from {lips}" in lines
    start, other, end = (torch.load(p) for p in (final, lips, tmp_path / "tuned" / "checkpoint.pth"))
    assert all(torch.equal(end[k], (other if k.startswith("video_encoder.") else start)[k]) for k in end)
    assert any(not torch.equal(start[k], other[k]) for k in start if k.startswith("video_encoder."))
    with pytest.raises(CheckpointError, match="video_encoder.* do not fit a tiny-dedr model"):
        train(manifest, tmp_path / "other", replace(opts, init_lips=str(make_checkpoint("tiny-asr")[0])),
              workers=1, log=lambda _: None)


def test_frozen_parts_end_as_they_started(trained, tiny_corpus, tmp_path):
    """`freeze`: a mixed stage with the ASR path (audio projector, LLM) frozen changes only what reads the
    lips; a part the model lacks is refused."""
    import torch

    from smop_edge.runtime.errors import UsageError

    _, final, _, _ = trained
    opts = replace(TrainOptions(model="tiny-dedr", steps=3, batch_size=2, lr=3e-3, warmup=1, log_every=1,
                                eval_every=100, asr_first=0, task_mix={"avsr": 1.0, "vsr": 1.0}).fine_tuning(
                                    str(final)), freeze=("audio_proj", "llm"))
    manifest = str(tiny_corpus / "train" / "manifest.jsonl")
    train(manifest, tmp_path / "lips", opts, workers=1, log=lambda _: None)
    start, end = torch.load(final), torch.load(tmp_path / "lips" / "checkpoint.pth")
    held = [k for k in start if k.startswith(("audio_proj.", "llm."))]
    assert held and all(torch.equal(start[k], end[k]) for k in held)
    for part in ("video_encoder.", "video_proj."):
        assert any(not torch.equal(start[k], end[k]) for k in start if k.startswith(part))
    with pytest.raises(UsageError, match="not 'decoder'"):
        train(manifest, tmp_path / "bad", replace(opts, freeze=("decoder",)), workers=1, log=lambda _: None)


def test_task_mix_decides_what_follows_the_asr_only_steps(trained, tiny_corpus, tmp_path):
    """`task_mix`: after the ASR-only steps only the tasks with a share are drawn and read on the dev set;
    a mix without video crops no mouths; unknown tasks and unusable shares are refused."""
    from smop_edge.runtime.errors import UsageError

    _, final, _, _ = trained
    opts = TrainOptions(model="tiny-dedr", steps=4, batch_size=2, lr=1e-4, warmup=1, log_every=1, eval_every=4,
                        eval_size=1, asr_first=1, task_mix={"asr": 1.0, "vsr": 0.0}).fine_tuning(str(final))
    assert not opts.trains_video and opts.tasks_at(4) == ["asr"]
    crops = tmp_path / "crops"
    train(str(tiny_corpus / "train" / "manifest.jsonl"), tmp_path / "asr-mix", opts,
          dev_manifest=str(tiny_corpus / "test" / "manifest.jsonl"), crop_cache=str(crops), workers=1,
          log=lambda _: None)
    rows = [json.loads(line) for line in (tmp_path / "asr-mix" / "train_log.jsonl").read_text().splitlines()]
    assert [r["tasks"] for r in rows if "tasks" in r] == [{"asr": 1}] * 4
    assert [set(r["dev_wer"]) for r in rows if "dev_wer" in r] == [{"asr"}] and not crops.exists()
    assert TrainOptions(asr_first=1, task_mix={"vsr": 3, "avsr": 1}).tasks_at(2) == ["asr", "vsr", "avsr"]
    for mix in ({"speech": 1.0}, {}, {"asr": 0.0}, {"asr": -1.0, "vsr": 2.0}, {"asr": float("nan")}):
        with pytest.raises(UsageError, match="task mix"):
            TrainOptions(task_mix=mix)


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_corpus, tiny_word_bank, tmp_path):
    """The saved state (weights, optimiser, generators, batch queue) is all a rerun needs: stopped between
    two saves and rerun, training ends with the weights of a run that never stopped."""
    import torch

    opts = TrainOptions(model="tiny-dedr", steps=8, batch_size=2, lr=3e-3, warmup=2, save_every=3, log_every=1,
                        eval_every=100, asr_first=4, curriculum=4, noise_delay=0, noise_ramp=2)
    manifest = str(tiny_corpus / "train" / "manifest.jsonl")

    def stop_at_step_5(line: str) -> None:
        if line.startswith("step 5/"):
            raise KeyboardInterrupt  # after step 5, before its state (saved at 3 and 6) is written

    with pytest.raises(KeyboardInterrupt):
        train(manifest, tmp_path / "resumed", opts, workers=1, word_bank=str(tiny_word_bank), log=stop_at_step_5)
    lines = []
    train(manifest, tmp_path / "resumed", opts, workers=1, word_bank=str(tiny_word_bank), log=lines.append)
    assert "resumed at step 3" in lines
    train(manifest, tmp_path / "straight", opts, workers=1, word_bank=str(tiny_word_bank), log=lambda _: None)
    resumed, straight = (torch.load(tmp_path / run / "checkpoint.pth") for run in ("resumed", "straight"))
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_augmentation_without_jitter_is_the_runtime_input():
    import numpy as np

    from smop_edge.recipe.train_data import Augment
    from smop_edge.runtime import lips

    rng = np.random.default_rng(0)
    rois = rng.integers(0, 255, (5, 96, 96), dtype=np.uint8)
    assert np.allclose(Augment(jitter=False).video(rois, rng), lips.normalize_rois(rois), atol=1e-5)
    jittered = Augment().video(rois, rng)
    assert jittered.shape == (5, 88, 88)
    mel = rng.standard_normal((80, 400)).astype(np.float32)
    masked = Augment().spectrogram(mel, rng)
    changed = masked != mel
    # masks are whole mel bands (<= 2 x 10 bins) and whole stretches of time (<= 2 x 5 % of frames)
    bands, stretches = changed.all(axis=1), changed.all(axis=0)
    assert bands.sum() <= 20 and stretches.sum() <= 2 * (400 // 20)
    assert (changed == (bands[:, None] | stretches[None, :])).all()


def test_learning_rate_restarts_for_the_mixed_phase():
    from smop_edge.recipe.training import learning_rate

    opts = TrainOptions(steps=1000, asr_first=600, lr=1e-3, warmup=100)
    lr = [learning_rate(s, opts) for s in range(1000)]
    assert lr[0] < lr[99] == pytest.approx(1e-3)  # warm-up
    assert lr[599] == pytest.approx(5e-5, rel=0.05)  # the ASR phase decays to 5 % of the peak
    assert lr[600] < lr[649] == pytest.approx(5e-4)  # restart at half the peak, half the warm-up
    assert lr[999] == pytest.approx(2.5e-5, rel=0.05)
    single = TrainOptions(steps=1000, asr_first=1000, lr=1e-3, warmup=100)
    assert learning_rate(999, single) == pytest.approx(5e-5, rel=0.05)


class _Payload:
    """Unpickling this would run code (write a marker file)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_a_malicious_training_state_runs_no_code(tiny_corpus, tmp_path):
    import torch

    from smop_edge.runtime.errors import CheckpointError

    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    torch.save({"model": _Payload(marker)}, out / "train_state.pt")
    with pytest.raises(CheckpointError, match="not a training state smop-edge can read safely"):
        train(str(tiny_corpus / "train" / "manifest.jsonl"), out, TrainOptions(model="tiny-dedr", steps=2), workers=1)
    assert not marker.exists()
