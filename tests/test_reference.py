import numpy as np
import pytest
import torch

from smop_edge.models.reference import ReferenceRecognizer
from smop_edge.runtime import features
from smop_edge.runtime.decoding import DecodingOptions
from smop_edge.runtime.errors import UnsuitableInputError
from smop_edge.runtime.prompt import prefix_segments


@pytest.fixture(scope="module")
def recognizer(make_checkpoint, base_tokenizer):
    path, _ = make_checkpoint("tiny-dedr")
    return ReferenceRecognizer.from_checkpoint(path, base_tokenizer)


def _inputs(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    frames = rng.standard_normal((int(seconds * 25), 88, 88)).astype(np.float32)
    return audio, frames


@pytest.mark.parametrize("task", ["asr", "vsr", "avsr"])
def test_prefix_order_per_task(recognizer, task):
    m, ids, tok = recognizer.model, recognizer.ids, recognizer.tokenizer
    prompt = tok.encode(m.cfg.tokens.prompts[task])
    a = torch.randn(1, 3, 64) if task != "vsr" else None
    v = torch.randn(1, 4, 64) if task != "asr" else None
    with torch.no_grad():
        prefix = m.assemble_prefix(prefix_segments(task, ids, prompt), a, v)[0]
        emb = lambda i: m.llm.get_input_embeddings().weight[i]
    expected = [emb(ids.bos)]
    if a is not None:
        expected += [emb(ids.audio_start), *a[0], emb(ids.audio_end)]
    if v is not None:
        expected += [emb(ids.video_start), *v[0], emb(ids.video_end)]
    expected += [emb(i) for i in prompt]
    torch.testing.assert_close(prefix, torch.stack(expected))


def test_faithful_audio_is_padded_to_30s_then_truncated(recognizer):
    enc = recognizer.model.audio_encoder
    audio, _ = _inputs(1.3)
    norm = features.normalize_waveform(audio)
    mel30 = torch.from_numpy(features.log_mel(norm, 80, pad_to_30s=True))[None]
    keep = features.kept_encoder_frames(len(audio))
    assert keep == 65
    with torch.no_grad():
        full = enc(mel30).last_hidden_state  # transformers' own forward on 3000 frames
        faithful = recognizer.model.encode_audio(mel30, keep, faithful=True)
        ours_on_30s = enc.forward_any_length(mel30)
        fast = enc.forward_any_length(torch.from_numpy(features.log_mel(norm, 80, pad_to_30s=False))[None])
    assert full.shape[1] == 1500 and faithful.shape[1] == keep
    torch.testing.assert_close(faithful, full[:, :keep])
    torch.testing.assert_close(ours_on_30s, full, atol=1e-5, rtol=1e-4)  # the fast forward is the same math
    # global attention: the unpadded encoding is NOT the padded one truncated
    assert fast.shape[1] == keep
    assert (fast - faithful).abs().max() > 1e-2


def test_avsr_audio_is_aligned_to_640_samples_per_frame(recognizer):
    audio, frames = _inputs(1.0)
    long_audio = np.concatenate([audio, audio])  # 2 s of audio for 1 s of video
    a, v, _ = recognizer.encode(long_audio, frames, "avsr")
    assert v.shape[1] == 25 // 2 and a.shape[1] == features.kept_encoder_frames(25 * 640) // 4
    a_only, _, _ = recognizer.encode(long_audio, None, "asr")
    assert a_only.shape[1] == features.kept_encoder_frames(len(long_audio)) // 4


def test_greedy_with_kv_cache_equals_recomputing_the_whole_sequence(recognizer):
    audio, frames = _inputs(0.8, seed=3)
    out = recognizer.transcribe(audio, frames, options=DecodingOptions(max_new_tokens=6))
    again = recognizer.transcribe(audio, frames, options=DecodingOptions(max_new_tokens=6))
    assert out.tokens == again.tokens and out.task == "avsr"
    m = recognizer.model
    a, v, _ = recognizer.encode(audio, frames, "avsr")
    prompt = recognizer.tokenizer.encode(m.cfg.tokens.prompts["avsr"])
    seq = m.assemble_prefix(prefix_segments("avsr", recognizer.ids, prompt), a, v)
    tokens = []
    with torch.no_grad():
        for _ in range(len(out.tokens)):
            nxt = int(m.llm(inputs_embeds=seq).logits[0, -1].argmax())
            if nxt == recognizer.ids.eos:
                break
            tokens.append(nxt)
            seq = torch.cat([seq, m.llm.get_input_embeddings().weight[nxt][None, None]], 1)
    assert tokens == out.tokens
    assert out.text == recognizer.tokenizer.decode(out.tokens)


def test_beam_search_runs_and_is_deterministic(recognizer):
    audio, frames = _inputs(0.6, seed=5)
    opts = DecodingOptions(beams=3, max_new_tokens=5)
    first = recognizer.transcribe(audio, frames, options=opts)
    assert recognizer.transcribe(audio, frames, options=opts).tokens == first.tokens
    assert len(first.tokens) <= 5


def test_task_choice_follows_the_input_and_the_model(recognizer, make_checkpoint, base_tokenizer):
    audio, frames = _inputs(0.5)
    assert recognizer.transcribe(audio, None, options=DecodingOptions(max_new_tokens=1)).task == "asr"
    assert recognizer.transcribe(None, frames, options=DecodingOptions(max_new_tokens=1)).task == "vsr"
    vsr_only = ReferenceRecognizer.from_checkpoint(make_checkpoint("tiny-vsr")[0], base_tokenizer)
    with pytest.raises(UnsuitableInputError, match="supports vsr"):
        vsr_only.transcribe(audio, None)
    with pytest.raises(UnsuitableInputError, match="not asr"):
        vsr_only.transcribe(audio, frames, task="asr")
