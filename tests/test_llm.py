import copy

import torch

from smop_edge.models import zoo
from smop_edge.models.llm import LoRAProjection, build_llm, merge_lora


def _llm(seed=0):
    torch.manual_seed(seed)
    llm = build_llm(zoo.get("tiny-jejr").llm).eval()
    with torch.no_grad():
        for name, p in llm.named_parameters():
            if "lora_down" in name:
                p.normal_(std=0.05)
    return llm


def test_lora_adds_the_scaled_low_rank_branch_to_q_and_v():
    llm = _llm()
    attn = llm.model.layers[0].self_attn
    x = torch.randn(2, 5, 64)
    assert isinstance(attn.q_proj, LoRAProjection) and not isinstance(attn.k_proj, LoRAProjection)
    with torch.no_grad():
        want_q = x @ attn.q_proj.weight.T + (x @ attn.lora_down_Q.weight.T @ attn.lora_up_Q.weight.T) * 0.125
        want_v = x @ attn.v_proj.weight.T + (x @ attn.lora_down_V.weight.T @ attn.lora_up_V.weight.T) * 0.125
        torch.testing.assert_close(attn.q_proj(x), want_q)
        torch.testing.assert_close(attn.v_proj(x), want_v)
    assert attn.lora_down_Q.weight.shape == (8, 64) and attn.lora_up_V.weight.shape == (32, 8)  # GQA: kv rows


def test_merged_lora_gives_the_same_logits():
    llm = _llm()
    ids = torch.randint(0, 200, (1, 12))
    with torch.no_grad():
        before = llm(input_ids=ids).logits
        merged = copy.deepcopy(llm)
        merge_lora(merged)
        after = merged(input_ids=ids).logits
        assert (before - after).abs().max().item() <= 1e-5
        assert not any("lora" in k for k in merged.state_dict())
        # and the LoRA branch mattered: dropping it changes the logits
        plain = copy.deepcopy(llm)
        for layer in plain.model.layers:
            layer.self_attn.lora_down_Q.weight.zero_()
            layer.self_attn.lora_down_V.weight.zero_()
        assert (plain(input_ids=ids).logits - before).abs().max().item() > 1e-4
