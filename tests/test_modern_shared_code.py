"""attention_course.modern (the shared code of the modern-attention pages) and the decode benchmark that uses it:
both RoPE layouts, cached generation equal to recomputation, a cache bounded by the window, cache bytes per token."""

import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT

from attention_course import modern


def test_rope_layouts_are_one_rotation_of_reordered_features():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 16)
    perm = modern.interleaved_to_half(16)
    torch.testing.assert_close(modern.rope_complex(x)[..., perm], modern.rope_rotate_half(x[..., perm]))
    # interleaved pair j of the token at position p turns by p * base^(-2j/d)
    e = torch.zeros(1, 16)
    e[0, 2] = 1.0  # pair 1, first feature
    out = modern.rope_complex(e.expand(5, 16).contiguous(), base=100.0)
    angle = 3 * 100.0 ** (-2 / 16)
    torch.testing.assert_close(
        out[3, 2:4], torch.tensor([torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))])
    )


@pytest.mark.parametrize("groups,window", [(4, None), (2, None), (1, 3), (2, 1), (2, 8)])
def test_cached_generation_equals_recomputation(groups, window):
    torch.manual_seed(groups)
    model = modern.TinyLM(vocab=50, d_model=32, layers=2, heads=4, groups=groups, window=window).eval()
    prompt = torch.randint(0, 50, (2, 4))
    cached, logits_cached = modern.generate(model, prompt, 12, use_cache=True)
    full, logits_full = modern.generate(model, prompt, 12, use_cache=False)
    assert torch.equal(cached, full)
    torch.testing.assert_close(logits_cached, logits_full)
    with torch.no_grad():
        _, caches = model(cached)
    expected_steps = cached.shape[1] if window is None else min(window - 1, cached.shape[1])
    assert all(c.keys.shape == (2, groups, expected_steps, 8) for c in caches)


def test_attention_layer_equals_sdpa_with_grouped_heads():
    torch.manual_seed(1)
    layer = modern.CachedAttention(32, heads=8, groups=2, rope_base=10000.0).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        out, cache = layer(x)
        q = modern.rope_complex(layer.q(x).unflatten(-1, (8, 4)).transpose(1, 2))
        k, v = layer.kv(x).unflatten(-1, (2, 2, 4)).permute(2, 0, 3, 1, 4)
        k = modern.rope_complex(k)
        ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        torch.testing.assert_close(out, layer.o(ctx.transpose(1, 2).flatten(2)))
    torch.testing.assert_close(cache.keys, k)
    assert cache.next_pos == 9


def test_sliding_window_mask_from_positions():
    pos = torch.arange(6)
    mask = modern.allowed_keys(pos, pos, 2)
    assert mask.sum(-1).tolist() == [1, 2, 2, 2, 2, 2] and not mask.triu(1).any()
    assert torch.equal(
        modern.allowed_keys(torch.arange(4, 7), torch.arange(7)), torch.ones(3, 7, dtype=torch.bool).tril(4)
    )  # bottom-right alignment with a cache


def test_decode_benchmark_reports_both_modes_and_the_cache_formula():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench

    torch.set_num_threads(1)
    result = bench.bench_decode([8, 16], repeats=1, devices=["cpu"])
    assert {(r["n"], r["mode"]) for r in result["steps"]} == {
        (n, m) for n in (8, 16) for m in ("recompute", "kv cache")
    }
    assert all(r["tokens_per_s"] > 0 for r in result["steps"])
    kib = {r["attention"]: r["kib_per_token"] for r in result["cache_per_token"]}
    assert kib == {
        "MHA": 2 * 32 * 32 * 128 * 2 / 1024,
        "GQA": 2 * 32 * 8 * 128 * 2 / 1024,
        "MQA": 2 * 32 * 1 * 128 * 2 / 1024,
    }
