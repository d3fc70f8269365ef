"""AV-HuBERT (video-only) against an independent functional oracle written from docs/design.md §1."""

import pytest
import torch
import torch.nn.functional as F

from smop_edge.models import zoo
from smop_edge.models.checkpoint import random_init


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, 1e-5)


def _block(x, sd, p, stride):
    out = F.conv2d(x, sd[p + ".conv1.weight"], stride=stride, padding=1)
    out = F.prelu(_bn(out, sd, p + ".bn1"), sd[p + ".relu1.weight"])
    out = _bn(F.conv2d(out, sd[p + ".conv2.weight"], padding=1), sd, p + ".bn2")
    res = x
    if p + ".downsample.0.weight" in sd:
        res = _bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride), sd, p + ".downsample.1")
    return F.prelu(out + res, sd[p + ".relu2.weight"])


def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-5)


def _lin(x, sd, p):
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))


def oracle(sd, cfg, frames):
    """frames [B, T, 88, 88] -> [B, T, d], written independently of the module code."""
    r = "feature_extractor_video.resnet."
    x = F.conv3d(frames[:, None], sd[r + "frontend3D.0.weight"], stride=(1, 2, 2), padding=(2, 3, 3))
    x = F.prelu(_bn(x, sd, r + "frontend3D.1"), sd[r + "frontend3D.2.weight"])
    x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    b, c, t, h, w = x.shape
    stem_hw = (h, w)
    x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    for i in range(1, 5):
        for j in range(2):
            x = _block(x, sd, f"{r}trunk.layer{i}.{j}", 2 if (i > 1 and j == 0) else 1)
    video = _lin(x.mean(dim=(2, 3)).view(b, t, -1), sd, "feature_extractor_video.proj")
    x = torch.cat([torch.zeros_like(video), video], dim=-1)  # audio (zeros) FIRST
    x = _lin(_ln(x, sd, "layer_norm"), sd, "post_extract_proj")
    v, g = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
    weight = v * g / v.norm(dim=(0, 1), keepdim=True)
    k = weight.shape[-1]
    conv = F.conv1d(x.transpose(1, 2), weight, sd["encoder.pos_conv.0.bias"], padding=k // 2,
                    groups=cfg.pos_conv_groups)
    x = x + F.gelu(conv[:, :, :-1]).transpose(1, 2)  # SamePad drops the last frame, then GELU
    if not cfg.layer_norm_first:
        x = _ln(x, sd, "encoder.layer_norm")
    hd = cfg.d_model // cfg.heads
    for i in range(cfg.layers):
        p = f"encoder.layers.{i}."

        def attn(y):
            q, kk, vv = (_lin(y, sd, p + f"self_attn.{n}_proj") for n in "qkv")
            if p + "self_attn.lora_down_Q.weight" in sd:
                q = q + _lin(_lin(y, sd, p + "self_attn.lora_down_Q"), sd, p + "self_attn.lora_up_Q") * 2.0
                vv = vv + _lin(_lin(y, sd, p + "self_attn.lora_down_V"), sd, p + "self_attn.lora_up_V") * 2.0
            q = q * hd ** -0.5  # fairseq scales q after the projection
            split = lambda z: z.view(b, t, cfg.heads, hd).transpose(1, 2)
            a = torch.softmax(split(q) @ split(kk).transpose(-1, -2), dim=-1) @ split(vv)
            return _lin(a.transpose(1, 2).reshape(b, t, -1), sd, p + "self_attn.out_proj")

        ffn = lambda y: _lin(F.gelu(_lin(y, sd, p + "fc1")), sd, p + "fc2")
        if cfg.layer_norm_first:
            x = x + attn(_ln(x, sd, p + "self_attn_layer_norm"))
            x = x + ffn(_ln(x, sd, p + "final_layer_norm"))
        else:
            x = _ln(x + attn(x), sd, p + "self_attn_layer_norm")
            x = _ln(x + ffn(x), sd, p + "final_layer_norm")
    if cfg.layer_norm_first:
        x = _ln(x, sd, "encoder.layer_norm")
    return x, stem_hw


@pytest.mark.parametrize("name,pre_ln", [("tiny-jejr", True), ("tiny-jejr", False), ("tiny-vsr", True)])
def test_video_encoder_matches_the_functional_oracle(name, pre_ln):
    cfg = zoo.get(name)
    cfg.video_encoder.layer_norm_first = pre_ln
    enc = random_init(cfg, seed=3).video_encoder
    sd = {k: v.detach() for k, v in enc.state_dict().items()}
    frames = torch.randn(2, 7, 88, 88)
    with torch.no_grad():
        got = enc(frames)
    want, stem_hw = oracle(sd, cfg.video_encoder, frames)
    assert stem_hw == (22, 22)  # 88 -> conv /2 -> 44 -> padded max-pool /2 -> 22
    assert got.shape == (2, 7, cfg.video_encoder.d_model)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_concat_order_matters():
    """Swapping audio zeros and video in the concat gives a different output (so the test above
    would catch the wrong order)."""
    cfg = zoo.get("tiny-jejr")
    enc = random_init(cfg, seed=1).video_encoder
    frames = torch.randn(1, 5, 88, 88)
    with torch.no_grad():
        video = enc.feature_extractor_video(frames[:, None])
        right = enc.post_extract_proj(enc.layer_norm(torch.cat([torch.zeros_like(video), video], -1)))
        wrong = enc.post_extract_proj(enc.layer_norm(torch.cat([video, torch.zeros_like(video)], -1)))
        got = enc.fused_features(frames)
    torch.testing.assert_close(got, right)
    assert not torch.allclose(got, wrong, atol=1e-3)


def test_padding_mask_makes_a_padded_batch_equal_to_the_clip_alone():
    cfg = zoo.get("tiny-jejr")
    enc = random_init(cfg, seed=2).video_encoder
    frames = torch.randn(1, 9, 88, 88)
    padded = torch.cat([frames, torch.zeros(1, 3, 88, 88)], dim=1)  # collate pads with zero frames
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[:, 9:] = True
    with torch.no_grad():
        alone = enc(frames)
        batched = enc(padded, mask)[:, :9]
        unmasked = enc(padded)[:, :9]
    # masked frames are zeroed before the positional conv (as its own zero padding) and never attended
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(unmasked, alone, atol=1e-3)
