import numpy as np
import pytest
import torch

from smop_edge.models import zoo
from smop_edge.models.checkpoint import random_init
from smop_edge.models.compression import compress
from smop_edge.runtime.config import CompressionConfig
from smop_edge.models.projector import (SparseMixtureOfProjectors, load_balancing_loss, route,
                                        router_z_loss)


def test_route_is_fp32_softmax_topk_renormalised():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 2.9, 0.1]], dtype=torch.bfloat16)
    weights, experts = route(logits, 2)
    p = np.exp(logits.float().numpy())
    p /= p.sum(-1, keepdims=True)
    want_idx = np.argsort(-p, axis=-1)[:, :2]
    want_w = np.take_along_axis(p, want_idx, -1)
    want_w /= want_w.sum(-1, keepdims=True)
    assert weights.dtype == torch.float32
    np.testing.assert_array_equal(experts.numpy(), want_idx)
    np.testing.assert_allclose(weights.numpy(), want_w, rtol=1e-6)
    np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, rtol=1e-6)


def test_smop_output_is_the_weighted_sum_of_the_chosen_experts():
    torch.manual_seed(0)
    smop = SparseMixtureOfProjectors(16, 32, 8, num_experts=4, top_k=2).eval()
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        out, routing = smop(x)
        flat = x.reshape(-1, 16)
        probs = torch.softmax(smop.gate(flat).float(), -1)
        dense = torch.stack([e(flat) for e in smop.experts], 1)  # [N, E, out]
        want = torch.zeros(flat.shape[0], 8)
        for n in range(flat.shape[0]):
            top = torch.topk(probs[n], 2)
            w = top.values / top.values.sum()
            want[n] = (w[:, None] * dense[n, top.indices]).sum(0)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out.reshape(-1, 8), want, atol=1e-6, rtol=1e-5)
    assert routing.experts.shape == (15, 2) and routing.logits.dtype == torch.float32


def test_each_expert_ends_with_its_own_layer_norm():
    smop = SparseMixtureOfProjectors(16, 32, 8, 4, 1)
    assert all(isinstance(e[3], torch.nn.LayerNorm) for e in smop.experts)
    x = torch.randn(20, 16)
    with torch.no_grad():
        out, _ = smop(x)
    # top-1 routing: each output row is one expert's LayerNorm output (zero mean, ~unit variance
    # before the affine, which is identity at init)
    torch.testing.assert_close(out.mean(-1), torch.zeros(20), atol=1e-5, rtol=0)


def test_load_balancing_and_z_losses():
    smop = SparseMixtureOfProjectors(8, 16, 4, 4, 2)
    torch.nn.init.zeros_(smop.gate.weight)
    _, routing = smop(torch.randn(64, 8))
    assert load_balancing_loss(routing).item() == pytest.approx(1.0, abs=1e-6)
    assert router_z_loss(routing).item() == pytest.approx(np.log(4) ** 2, rel=1e-6)
    with torch.no_grad():
        smop.gate.weight.zero_()
        smop.gate.weight[0] = 5.0
        smop.gate.weight[1] = 4.0
    x = torch.rand(64, 8) + 0.5  # positive inputs: experts 0 and 1 always win
    _, skewed = smop(x)
    assert load_balancing_loss(skewed).item() > 1.5
    assert router_z_loss(skewed).item() > np.log(4) ** 2


@pytest.mark.parametrize("name", ["tiny-jejr", "tiny-jedr", "tiny-dedr"])
def test_layout_routing(name):
    model = random_init(zoo.get(name), seed=4)
    a, v = torch.randn(1, 24, 64), torch.randn(1, 20, 64)
    with torch.no_grad():
        ta, tv, routings = model.project(a, v)
        ca, cv = compress(a, model.cfg.audio_compression), compress(v, model.cfg.video_compression)
        if name == "tiny-jejr":  # one router over the concatenated audio+video tokens
            joint, r = model.audiovisual_proj(torch.cat([ca, cv], 1), "gate")
            want_a, want_v, n_routers = joint[:, :6], joint[:, 6:], 1
            assert routings[0].logits.shape[0] == 6 + 10
        elif name == "tiny-jedr":  # shared experts, a router per modality
            want_a = model.audiovisual_proj(ca, "audio_gate")[0]
            want_v = model.audiovisual_proj(cv, "video_gate")[0]
            n_routers = 2
        else:  # a pool and a router per modality
            want_a, want_v, n_routers = model.audio_proj(ca)[0], model.video_proj(cv)[0], 2
    assert ta.shape == (1, 6, 64) and tv.shape == (1, 10, 64)
    torch.testing.assert_close(ta, want_a)
    torch.testing.assert_close(tv, want_v)
    assert len(routings) == n_routers


def test_compression_modes_and_remainders():
    x = torch.arange(2 * 7 * 3, dtype=torch.float32).view(2, 7, 3)
    pooled = compress(x, CompressionConfig("avg-pool", 2))
    assert pooled.shape == (2, 3, 3)
    torch.testing.assert_close(pooled[0, 0], (x[0, 0] + x[0, 1]) / 2)
    stacked = compress(x, CompressionConfig("stack", 3))
    assert stacked.shape == (2, 2, 9)
    torch.testing.assert_close(stacked[1, 1], torch.cat([x[1, 3], x[1, 4], x[1, 5]]))
    with pytest.raises(ValueError, match="fewer than the compression rate"):
        compress(x[:, :1], CompressionConfig("avg-pool", 2))
