"""The reference answers of scoring-functions (loaded from solutions/, not copied) agree with d2l and PyTorch."""

import math

import pytest
import torch
import torch.nn.functional as F
from d2l import torch as d2l
from helpers import ROOT

from attention_course import notebooks as nbt

ref = nbt.load_module(ROOT / "solutions" / "scoring-functions" / "scoring-functions.ipynb")

SHAPES = [(2, 3, 5, 4, 6), (3, 1, 7, 8, 2), (4, 6, 2, 16, 3), (2, 4, 4, 64, 5)]  # B, n_q, n_k, d, d_v


def _lens(B, n_q, n_k, kind, seed):
    g = torch.Generator().manual_seed(seed)
    if kind is None:
        return None
    lens = torch.randint(1, n_k + 1, (B,) if kind == "1d" else (B, n_q), generator=g)
    lens.view(-1)[0], lens.view(-1)[-1] = 1, n_k
    return lens


def _keep(lens, B, n_q, n_k):
    if lens is None:
        return torch.ones(B, n_q, n_k, dtype=torch.bool)
    lens = lens[:, None].expand(B, n_q) if lens.dim() == 1 else lens
    return torch.arange(n_k) < lens[:, :, None]


@pytest.mark.parametrize("kind", [None, "1d", "2d"])
@pytest.mark.parametrize("shape", SHAPES)
def test_masked_softmax_equals_d2l(shape, kind):
    B, n_q, n_k, _, _ = shape
    scores = torch.randn(B, n_q, n_k) * 3
    lens = _lens(B, n_q, n_k, kind, seed=sum(shape))
    before = scores.clone()
    got = ref.masked_softmax(scores, lens)
    assert torch.equal(scores, before), "the reference must not modify its input"
    from_d2l = d2l.masked_softmax(scores.clone(), lens)  # d2l writes the fill into its argument: give it a copy
    torch.testing.assert_close(got, from_d2l)
    torch.testing.assert_close(got.sum(-1), torch.ones(B, n_q))
    assert (got[~_keep(lens, B, n_q, n_k)] == 0).all()


def test_masked_softmax_empty_rows_as_the_chapter_says():
    """valid_len = 0 is never graded; the chapter shows what each fill does. The reference fills with -1e6 like
    d2l (uniform weights), -inf gives NaN, and F.scaled_dot_product_attention gives a row of zeros."""
    scores = torch.randn(2, 2, 3)
    lens = torch.tensor([0, 2])
    got = ref.masked_softmax(scores, lens)
    torch.testing.assert_close(got, d2l.masked_softmax(scores.clone(), lens))
    torch.testing.assert_close(got[0], torch.full((2, 3), 1 / 3))
    with_inf = torch.softmax(scores.masked_fill(~_keep(lens, 2, 2, 3), float("-inf")), dim=-1)
    assert torch.isnan(with_inf[0]).all() and not torch.isnan(with_inf[1]).any()
    v = torch.randn(2, 3, 4)
    sdpa = F.scaled_dot_product_attention(torch.randn(2, 2, 5), torch.randn(2, 3, 5), v, attn_mask=_keep(lens, 2, 2, 3))
    assert (sdpa[0] == 0).all()


@pytest.mark.parametrize("kind", [None, "1d", "2d"])
@pytest.mark.parametrize("shape", SHAPES)
def test_dot_product_attention_equals_d2l_and_torch(shape, kind):
    B, n_q, n_k, d, d_v = shape
    q, k, v = torch.randn(B, n_q, d), torch.randn(B, n_k, d), torch.randn(B, n_k, d_v)
    lens = _lens(B, n_q, n_k, kind, seed=d)
    mine = ref.DotProductAttention(dropout=0.3).eval()
    theirs = d2l.DotProductAttention(dropout=0.3).eval()
    out = mine(q, k, v, lens)
    torch.testing.assert_close(out, theirs(q, k, v, lens))
    torch.testing.assert_close(mine.attention_weights, theirs.attention_weights)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=_keep(lens, B, n_q, n_k)))


def test_dot_product_attention_dropout_only_in_training():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    attention = ref.DotProductAttention(dropout=0.5)
    expected = d2l.DotProductAttention(dropout=0.0)(q, k, v)
    torch.testing.assert_close(attention.eval()(q, k, v), expected)
    torch.manual_seed(0)
    out = attention.train()(q, k, v)
    torch.testing.assert_close(attention.attention_weights, torch.softmax(q @ k.mT / 2, dim=-1))
    assert not torch.allclose(out, expected)


def _copy_additive(src, dst):
    """Copy the weights by attribute (both after one forward pass: the layers are lazy)."""
    with torch.no_grad():
        for name in ("W_q", "W_k", "w_v"):
            getattr(dst, name).weight.copy_(getattr(src, name).weight)


@pytest.mark.parametrize("kind", [None, "1d", "2d"])
@pytest.mark.parametrize("dims", [(2, 3, 5, 4, 7, 6, 8), (3, 1, 10, 20, 2, 4, 8), (4, 5, 2, 3, 3, 1, 16)])
def test_additive_attention_equals_d2l(dims, kind):
    B, n_q, n_k, d_q, d_k, d_v, h = dims
    q, k, v = torch.randn(B, n_q, d_q), torch.randn(B, n_k, d_k), torch.randn(B, n_k, d_v)
    lens = _lens(B, n_q, n_k, kind, seed=h + n_k)
    mine = ref.AdditiveAttention(num_hiddens=h, dropout=0.2).eval()
    theirs = d2l.AdditiveAttention(num_hiddens=h, dropout=0.2).eval()
    mine(q, k, v, lens), theirs(q, k, v, lens)
    _copy_additive(theirs, mine)
    for layer in (mine.W_q, mine.W_k, mine.w_v):
        assert layer.bias is None
    torch.testing.assert_close(mine(q, k, v, lens), theirs(q, k, v, lens))
    torch.testing.assert_close(mine.attention_weights, theirs.attention_weights)
    assert sum(p.numel() for p in mine.parameters()) == h * (d_q + d_k + 1)


def test_additive_attention_is_the_formula():
    """w_v^T tanh(W_q q + W_k k) for one query-key pair, by hand."""
    attention = ref.AdditiveAttention(num_hiddens=3, dropout=0.0).eval()
    q, k, v = torch.randn(1, 1, 2), torch.randn(1, 2, 5), torch.randn(1, 2, 4)
    attention(q, k, v)
    Wq, Wk, wv = attention.W_q.weight.detach(), attention.W_k.weight.detach(), attention.w_v.weight[0].detach()
    e = [float(wv @ torch.tanh(Wq @ q[0, 0] + Wk @ k[0, j])) for j in range(2)]
    a0 = math.exp(e[0]) / (math.exp(e[0]) + math.exp(e[1]))
    torch.testing.assert_close(attention.attention_weights, torch.tensor([[[a0, 1 - a0]]]))
