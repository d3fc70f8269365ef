"""Training on a frozen pretrained audio encoder: its outputs are cached once (faithful mode as the
bundle runs it), reused by a rerun, and the encoder itself never changes."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from smop_edge.recipe import audio_cache
from smop_edge.recipe.training import TrainOptions, train
from smop_edge.runtime.errors import UsageError


@pytest.fixture(scope="module")
def cached_run(tiny_corpus, tiny_word_bank, tmp_path_factory):
    root = tmp_path_factory.mktemp("cached")
    shutil.copytree(tiny_corpus / "train", root / "corpus")  # the cache is written beside the manifest
    manifest = str(root / "corpus" / "manifest.jsonl")
    opts = TrainOptions(model="demo-v2-small", steps=12, asr_first=8, batch_size=4, lr=3e-3, warmup=2,
                        save_every=6, log_every=3, eval_every=100, noise_delay=0, noise_ramp=1,
                        audio_mode="faithful", noise_variants=1, composed_pool=4)
    built = []
    final = train(manifest, root / "run", opts, workers=1, word_bank=str(tiny_word_bank),
                  progress=lambda name, done, total: built.append(name), log=lambda _: None)
    return manifest, root, opts, final, built


def test_cache_holds_faithful_clean_and_noisy_tokens(cached_run):
    from smop_edge.models.checkpoint import load_model
    from smop_edge.runtime import media

    manifest, _, _, final, built = cached_run
    assert "audio cache" in built
    entries = torch.load(audio_cache.path_for(manifest, True), weights_only=True)["entries"]
    assert len(entries) == 4 + 4  # the corpus and the pool of composed utterances
    assert all(len(e) == 2 and not torch.equal(e[0], e[1]) for e in entries.values())  # clean, one noisy
    model, _ = load_model(final)
    audio = media.read_audio(str(Path(manifest).parent / "train" / "train-5-000000.mp4"))
    faithful, fast = audio_cache.encode(model, audio, True), audio_cache.encode(model, audio, False)
    cached = entries[audio_cache.audio_key(audio)][0].float()
    assert cached.shape == faithful.shape and torch.allclose(cached, faithful.float(), atol=1e-2)
    assert not torch.allclose(cached, fast.float(), atol=1e-2)  # the modes differ: the cache is faithful's


def test_encoder_stays_whisper_and_the_rest_trains(cached_run):
    """After ASR-only steps and mixed ones (video batches read their teacher from the cache too)."""
    from smop_edge.models.checkpoint import load_model
    from smop_edge.models import zoo
    from smop_edge.models.llama_smop import LlamaSMoP
    from smop_edge.models.pretrained.parts import load_pretrained

    _, _, _, final, _ = cached_run
    trained, _ = load_model(final)
    cfg = zoo.get("demo-v2-small")
    cfg.llm.vocab = trained.cfg.llm.vocab
    torch.manual_seed(0)
    fresh = LlamaSMoP(cfg)
    load_pretrained(fresh)
    for name, p in fresh.audio_encoder.state_dict().items():
        assert torch.equal(p, trained.audio_encoder.state_dict()[name]), name
    for part in ("audio_proj", "video_proj", "video_encoder"):  # the mixed steps train the lips on cached audio
        trained_part = getattr(trained, part).state_dict()
        assert any(not torch.equal(p, trained_part[name]) for name, p in getattr(fresh, part).state_dict().items())


def test_rerun_reuses_the_cache_and_other_settings_rebuild_it(cached_run, tiny_word_bank):
    manifest, root, opts, _, _ = cached_run
    path = audio_cache.path_for(manifest, True)
    stamp = path.stat().st_mtime_ns
    built = []
    train(manifest, root / "run", opts, workers=1, word_bank=str(tiny_word_bank),
          progress=lambda name, done, total: built.append(name), log=lambda _: None)
    assert "audio cache" not in built and path.stat().st_mtime_ns == stamp
    train(manifest, root / "run2", replace(opts, steps=1, composed_pool=6), workers=1,
          word_bank=str(tiny_word_bank), progress=lambda name, done, total: built.append((name, total)),
          log=lambda _: None)
    assert ("audio cache", 2) in built  # two more composed utterances: only they are encoded
    train(manifest, root / "run3", replace(opts, steps=1, noise_variants=2), workers=1,
          word_bank=str(tiny_word_bank), progress=lambda name, done, total: built.append((name, total)),
          log=lambda _: None)
    assert ("audio cache", 8) in built  # other settings: all anew
    assert all(len(e) == 3 for e in torch.load(path, weights_only=True)["entries"].values())


def test_faithful_mode_needs_a_frozen_pretrained_encoder(tiny_corpus, tmp_path):
    with pytest.raises(UsageError, match="faithful"):
        train(str(tiny_corpus / "train" / "manifest.jsonl"), tmp_path, TrainOptions(model="tiny-dedr", audio_mode="faithful"),
              workers=1, log=lambda _: None)
    with pytest.raises(UsageError, match="audio mode"):
        TrainOptions(audio_mode="slow")


def test_token_masks_blank_stretches_and_bands_with_the_mean():
    import numpy as np

    from smop_edge.recipe.train_data import Augment

    x = torch.randn(200, 40)
    before = x.clone()
    masked = 0
    for seed in range(20):
        y = Augment().tokens(x, np.random.default_rng(seed))
        assert y.shape == x.shape and torch.equal(x, before)  # the cache's tensor is not touched
        changed = ~torch.isclose(y, x)
        rows, cols = changed.all(1), changed.all(0)
        assert rows.sum() <= 2 * 10 and cols.sum() <= 2 * 4  # at most two stretches of 5 %, two bands of 10 %
        for r in torch.nonzero(rows).flatten().tolist():  # a masked token is the mean token
            assert torch.allclose(y[r], x.mean(0))
        for c in torch.nonzero(cols).flatten().tolist():  # a masked channel is its mean
            assert torch.allclose(y[:, c], x[:, c].mean().expand(200))
        assert torch.equal(y[~changed], x[~changed])
        masked += int(rows.any()) + int(cols.any())
    assert masked >= 20


def test_the_cache_holds_frames_and_serves_each_model_its_compression():
    """Averaged and stacked tokens come from the same cached frames (models that compress differently share it)."""
    import numpy as np

    from smop_edge.models.compression import compress
    from smop_edge.runtime.config import CompressionConfig

    frames = torch.randn(10, 6).half()
    noisy = frames + 1
    for cfg, shape in ((CompressionConfig("avg-pool", 4), (2, 6)), (CompressionConfig("stack", 4), (2, 24))):
        cache = audio_cache.AudioTokenCache([frames], [[noisy]], cfg)
        clean = cache.clean_tokens([0])[0]
        assert clean.shape == shape and clean.dtype == torch.float32
        assert torch.equal(clean, compress(frames.float()[None], cfg)[0])
        drawn = cache.draw([0], 1.0, np.random.default_rng(0))[0]
        assert torch.equal(drawn, compress(noisy.float()[None], cfg)[0])
