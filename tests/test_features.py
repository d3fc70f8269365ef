import numpy as np
import pytest

from smop_edge.runtime import features


def _speechy(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    return x.astype(np.float32)


@pytest.mark.parametrize("seconds", [0.3, 1.37, 4.0])
def test_log_mel_equals_whisper_feature_extractor(seconds):
    from transformers import WhisperFeatureExtractor

    audio = features.normalize_waveform(_speechy(seconds))
    ext = WhisperFeatureExtractor(feature_size=80)
    want = ext(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    got = features.log_mel(audio, 80, pad_to_30s=True)
    assert got.shape == want.shape == (80, 3000)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # the fast path has len // 160 frames and the same filters (its max differs only via padding)
    fast = features.log_mel(audio, 80, pad_to_30s=False)
    assert fast.shape == (80, len(audio) // 160)


def test_mel_filters_match_transformers():
    from transformers.audio_utils import mel_filter_bank

    want = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                           sampling_rate=16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(features.mel_filters(80), want, atol=1e-8)


def test_normalisation_is_the_authors_layer_norm():
    import torch

    x = _speechy(1.0) * 7 + 0.2
    want = torch.nn.functional.layer_norm(torch.from_numpy(x), x.shape, eps=1e-8).numpy()
    np.testing.assert_allclose(features.normalize_waveform(x), want, atol=1e-5)
    silent = features.normalize_waveform(np.zeros(1600, np.float32))
    assert np.all(np.isfinite(silent)) and np.all(silent == 0)


def test_kept_encoder_frames():
    assert features.kept_encoder_frames(16000) == 50
    assert features.kept_encoder_frames(16000 * 3 + 100) == 150
    assert features.kept_encoder_frames(4000) == 25  # never fewer than 25


def test_rejects_stereo():
    with pytest.raises(ValueError, match="mono"):
        features.log_mel(np.zeros((2, 1600)))
