"""The reference of modern-attention (loaded from solutions/, not copied) agrees with PyTorch's built-ins and
explicit formulas, and the assignment's hidden tests, run in-process, pass every correct variant and fail every
simulated mistake exactly where expected (the same submissions tests/test_autograde_class.py grades with nbgrader)."""

import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT
from submissions import modern_attention as subs
from torch import nn

from attention_course import notebooks as nbt

NOTEBOOK = ROOT / "solutions" / "modern-attention" / "modern-attention.ipynb"
ref = nbt.load_module(NOTEBOOK)


def complex_rope(x, positions, base=10000.0):
    """RoFormer's definition: pair j as the complex number x_2j + i x_2j+1, times e^(i p base^(-2j/d))."""
    d = x.shape[-1]
    angles = positions.double()[:, None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.view_as_complex(x.double().unflatten(-1, (d // 2, 2)).contiguous()) * torch.exp(1j * angles)
    return torch.view_as_real(z).flatten(-2).float()


def rotate_half_rope(x, positions, base=10000.0):
    """GPT-NeoX / Hugging Face Llama layout: feature j paired with feature j + d/2."""
    d = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    emb = torch.cat([positions.double()[:, None] * inv_freq] * 2, dim=-1)
    x1, x2 = x.double()[..., : d // 2], x.double()[..., d // 2 :]
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.double() * emb.cos() + rotated * emb.sin()).float()


@pytest.mark.parametrize(
    "shape,base", [((7, 8), 10000.0), ((2, 3, 16, 64), 10000.0), ((3, 5, 2), 10.0), ((2, 40, 32), 500000.0)]
)
def test_rope_equals_complex_multiplication(shape, base):
    torch.manual_seed(shape[-1])
    x = torch.randn(shape)
    torch.testing.assert_close(ref.apply_rope(x, base=base), complex_rope(x, torch.arange(shape[-2]), base))
    positions = torch.randint(0, 64, (shape[-2],))
    torch.testing.assert_close(ref.apply_rope(x, positions, base), complex_rope(x, positions, base))


def test_rope_relative_position_property():
    torch.manual_seed(0)
    q, k = torch.randn(16), torch.randn(16)

    def score(m, n):
        return (ref.apply_rope(q[None], torch.tensor([m])) @ ref.apply_rope(k[None], torch.tensor([n])).T).item()

    for distance in (0, 1, 5, 30):
        scores = [score(n + distance, n) for n in (0, 3, 100, 1000)]
        assert max(scores) - min(scores) < 1e-3, scores
    assert abs(score(5, 0) - score(0, 0)) > 1e-3


def test_interleaved_equals_rotate_half_after_permuting_features():
    """Converting a checkpoint: interleaved pair (2j, 2j+1) is rotate_half's pair (j, j + d/2)."""
    torch.manual_seed(1)
    d = 16
    x = torch.randn(2, 9, d)
    to_half = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # interleaved feature order -> half-split
    positions = torch.arange(9)
    torch.testing.assert_close(ref.apply_rope(x)[..., to_half], rotate_half_rope(x[..., to_half], positions))


def test_sliding_window_mask():
    for n in range(1, 10):
        for w in range(1, n + 3):
            i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
            assert torch.equal(ref.sliding_window_mask(n, w), (j <= i) & (j > i - w))
        assert torch.equal(ref.sliding_window_mask(n, n), torch.ones(n, n, dtype=torch.bool).tril())


@torch.no_grad()
def projections(module, x, heads, rope_base, start=0):
    q, k, v = (layer(x) for layer in (module.W_query, module.W_key, module.W_value))
    hd = q.shape[-1] // heads
    q, k, v = (t.unflatten(-1, (-1, hd)).transpose(1, 2) for t in (q, k, v))
    if rope_base is not None:
        positions = torch.arange(start, start + x.shape[1])
        q, k = complex_rope(q, positions, rope_base), complex_rope(k, positions, rope_base)
    return q, k, v


CONFIGS = [
    (2, 9, 12, 16, 4, 2, False, None),
    (1, 7, 8, 24, 6, 3, True, 10000.0),
    (3, 5, 16, 16, 4, 1, False, 10000.0),
    (2, 6, 8, 8, 2, 2, True, 500.0),
]


@pytest.mark.parametrize("B,n,d_in,d_out,heads,groups,bias,rope_base", CONFIGS)
def test_gqa_equals_sdpa_enable_gqa(B, n, d_in, d_out, heads, groups, bias, rope_base):
    torch.manual_seed(n)
    module = ref.GroupedQueryAttention(d_in, d_out, heads, groups, 0.2, bias, rope_base).eval()
    x = torch.randn(B, n, d_in)
    out, (K, V) = module(x)
    q, k, v = projections(module, x, heads, rope_base)
    context = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(out, module.out_proj(context.transpose(1, 2).flatten(2)))
    torch.testing.assert_close(K, k)
    torch.testing.assert_close(V, v)
    assert K.shape == V.shape == (B, groups, n, d_out // heads)


@pytest.mark.parametrize("heads,bias", [(1, False), (2, True), (4, False), (8, True)])
def test_gqa_with_groups_equal_heads_is_multi_head_attention(heads, bias):
    torch.manual_seed(heads)
    D, n = 16, 7
    module = ref.GroupedQueryAttention(D, D, heads, heads, 0.0, bias).eval()
    mha = nn.MultiheadAttention(D, heads, bias=bias, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([module.W_query.weight, module.W_key.weight, module.W_value.weight]))
        mha.out_proj.weight.copy_(module.out_proj.weight)
        if bias:
            mha.in_proj_bias.copy_(torch.cat([module.W_query.bias, module.W_key.bias, module.W_value.bias]))
            mha.out_proj.bias.zero_()
    x = torch.randn(3, n, D)
    expected = mha(x, x, x, attn_mask=torch.ones(n, n, dtype=torch.bool).triu(1), need_weights=False)[0]
    torch.testing.assert_close(module(x)[0], expected)


@pytest.mark.parametrize("rope_base", [None, 10000.0])
@pytest.mark.parametrize("step", [1, 2, 7])
def test_cached_decode_equals_full_forward(rope_base, step):
    torch.manual_seed(step)
    module = ref.GroupedQueryAttention(16, 32, 8, 2, 0.0, True, rope_base).eval()
    x = torch.randn(2, 23, 16)
    full, full_cache = module(x)
    outs, cache = [], None
    for start in range(0, 23, step):
        out, cache = module(x[:, start : start + step], cache)
        outs.append(out)
        assert cache[0].shape == (2, 2, min(start + step, 23), 4)
    torch.testing.assert_close(torch.cat(outs, 1), full)
    torch.testing.assert_close(cache[0], full_cache[0])
    torch.testing.assert_close(cache[1], full_cache[1])


def test_cache_uses_bottom_right_alignment():
    """With a cache, the new queries' mask is SDPA's causal_lower_right, not is_causal's top-left."""
    from torch.nn.attention.bias import causal_lower_right

    torch.manual_seed(3)
    module = ref.GroupedQueryAttention(8, 8, 2, 1, 0.0, False, None).eval()
    x = torch.randn(1, 9, 8)
    _, cache = module(x[:, :6])
    out, _ = module(x[:, 6:], cache)
    q, k, v = projections(module, x, 2, None)
    k, v = k.expand(-1, 2, -1, -1), v.expand(-1, 2, -1, -1)
    lower_right = F.scaled_dot_product_attention(q[:, :, 6:], k, v, attn_mask=causal_lower_right(3, 9))
    top_left = F.scaled_dot_product_attention(q[:, :, 6:], k, v, is_causal=True)
    with torch.no_grad():
        torch.testing.assert_close(out, module.out_proj(lower_right.transpose(1, 2).flatten(2)))
        assert not torch.allclose(out, module.out_proj(top_left.transpose(1, 2).flatten(2)), atol=1e-3)


def _grade_in_process(answers):
    """Run the notebook's cells as a kernel would (one namespace, in order), with some answers replaced; returns
    the failing test cells. One namespace matters: the GQA cells put a trusted apply_rope in place."""
    nb = nbt.read(NOTEBOOK)
    namespace = {}
    reference = nbt.reference_answers(nb)
    failed = set()
    for cell in nb.cells:
        if nbt.is_setup(cell):
            exec(cell.source, namespace)
        elif nbt.is_answer(cell):
            gid = nbt.nbgrader_meta(cell)["grade_id"]
            exec(answers.get(gid, reference[gid]), namespace)
        elif nbt.is_test(cell):
            try:
                exec(cell.source, namespace)
            except Exception:
                failed.add(nbt.nbgrader_meta(cell)["grade_id"])
    return failed


CORRECT = {
    "reference": {},
    "CORRECT": subs.CORRECT,
    **{name: {cell: source} for name, (cell, source) in subs.MORE_CORRECT.items()},
}


@pytest.mark.parametrize("name", CORRECT)
def test_hidden_tests_pass_correct_variants(name):
    torch.set_num_threads(1)
    assert _grade_in_process(CORRECT[name]) == set()


@pytest.mark.parametrize("name", subs.WRONG)
def test_hidden_tests_catch_mistake(name):
    torch.set_num_threads(1)
    cell, source, losing = subs.WRONG[name]
    assert _grade_in_process({cell: source}) == set(losing)
