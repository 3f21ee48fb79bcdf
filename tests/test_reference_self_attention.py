"""The reference answers of self-attention (loaded from solutions/, not copied) agree with PyTorch and d2l."""

import math

import pytest
import torch
import torch.nn.functional as F
from d2l import torch as d2l
from helpers import ROOT
from torch import nn

from attention_course import notebooks as nbt

ref = nbt.load_module(ROOT / "solutions" / "self-attention" / "self-attention.ipynb")

INPUTS = torch.tensor(
    [
        [0.43, 0.15, 0.89],
        [0.55, 0.87, 0.66],
        [0.57, 0.85, 0.64],
        [0.22, 0.58, 0.33],
        [0.77, 0.25, 0.10],
        [0.05, 0.80, 0.55],
    ]
)


def test_self_attention_reproduces_raschka_v2():
    """With seed 789 the reference creates the same layers as the book's SelfAttention_v2 (same order)."""
    torch.manual_seed(789)
    sa = ref.SelfAttention(3, 2)
    expected = torch.tensor(
        [
            [-0.0739, 0.0713],
            [-0.0748, 0.0703],
            [-0.0749, 0.0702],
            [-0.0760, 0.0685],
            [-0.0763, 0.0679],
            [-0.0754, 0.0693],
        ]
    )
    torch.testing.assert_close(sa(INPUTS), expected, atol=1e-4, rtol=0)


def test_self_attention_row_2_is_the_worked_context_vector():
    """The page's step-by-step context vector of "journey" (seed 123, torch.rand matrices) is row 2."""
    torch.manual_seed(123)
    W_query, W_key, W_value = (torch.rand(3, 2) for _ in range(3))
    sa = ref.SelfAttention(3, 2)
    with torch.no_grad():
        for layer, W in [(sa.W_query, W_query), (sa.W_key, W_key), (sa.W_value, W_value)]:
            layer.weight.copy_(W.T)
    torch.testing.assert_close(sa(INPUTS)[1], torch.tensor([0.3061, 0.8210]), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "shape,d_out,bias", [((6, 3), 2, False), ((2, 5, 4), 3, True), ((3, 7, 8), 8, False), ((1, 1, 5), 2, True)]
)
def test_self_attention_equals_sdpa_and_multihead_attention(shape, d_out, bias):
    torch.manual_seed(0)
    sa = ref.SelfAttention(shape[-1], d_out, qkv_bias=bias)
    x = torch.randn(shape)
    got = sa(x)
    expected = F.scaled_dot_product_attention(sa.W_query(x), sa.W_key(x), sa.W_value(x))
    torch.testing.assert_close(got, expected)
    if shape[-1] == d_out:  # nn.MultiheadAttention (one head) with the same projections and an identity output
        mha = nn.MultiheadAttention(d_out, num_heads=1, bias=bias, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([sa.W_query.weight, sa.W_key.weight, sa.W_value.weight]))
            if bias:
                mha.in_proj_bias.copy_(torch.cat([sa.W_query.bias, sa.W_key.bias, sa.W_value.bias]))
                mha.out_proj.bias.zero_()
            mha.out_proj.weight.copy_(torch.eye(d_out))
        xb = x if x.dim() == 3 else x.unsqueeze(0)
        torch.testing.assert_close(mha(xb, xb, xb)[0].reshape(got.shape), got)


def test_self_attention_equals_d2l_dot_product_attention():
    torch.manual_seed(1)
    sa = ref.SelfAttention(5, 4, qkv_bias=True)
    x = torch.randn(3, 6, 5)
    attention = d2l.DotProductAttention(dropout=0).eval()
    torch.testing.assert_close(sa(x), attention(sa.W_query(x), sa.W_key(x), sa.W_value(x)))


def test_self_attention_creates_its_layers_in_order():
    torch.manual_seed(5)
    sa = ref.SelfAttention(4, 6, qkv_bias=True)
    torch.manual_seed(5)
    layers = [nn.Linear(4, 6, bias=True) for _ in range(3)]
    assert [n for n, _ in sa.named_children()] == ["W_query", "W_key", "W_value"]
    for name, layer in zip(("W_query", "W_key", "W_value"), layers):
        torch.testing.assert_close(getattr(sa, name).weight, layer.weight)
        torch.testing.assert_close(getattr(sa, name).bias, layer.bias)


@pytest.mark.parametrize("num_steps,num_hiddens", [(1, 2), (60, 32), (1000, 64), (17, 6)])
def test_positional_encoding_equals_d2l(num_steps, num_hiddens):
    d2l_pe = d2l.PositionalEncoding(num_hiddens, 0, max_len=num_steps)
    torch.testing.assert_close(ref.positional_encoding(num_steps, num_hiddens), d2l_pe.P[0], atol=1e-4, rtol=0)


def test_positional_encoding_equals_the_formula_in_float64():
    P = ref.positional_encoding(200, 16).double()
    for i in (0, 1, 7, 199):
        for j in range(8):
            angle = i / 10000 ** (2 * j / 16)
            assert abs(P[i, 2 * j].item() - math.sin(angle)) < 1e-4
            assert abs(P[i, 2 * j + 1].item() - math.cos(angle)) < 1e-4


@pytest.mark.parametrize("B,n,d,max_len", [(2, 7, 8, 1000), (3, 30, 16, 64), (1, 1, 2, 10), (4, 12, 6, 12)])
def test_positional_encoding_layer_equals_d2l(B, n, d, max_len):
    x = torch.randn(B, n, d)
    mine = ref.PositionalEncoding(d, 0.5, max_len=max_len).eval()
    theirs = d2l.PositionalEncoding(d, 0.5, max_len=max_len).eval()
    torch.testing.assert_close(mine(x), theirs(x), atol=1e-4, rtol=1e-5)
    mine.train()
    mine.dropout.p = 0.0
    torch.testing.assert_close(mine(x), theirs.eval()(x), atol=1e-4, rtol=1e-5)


def test_positional_encoding_layer_drops_the_sum_in_training():
    torch.manual_seed(0)
    x = torch.randn(4, 50, 16)
    layer = ref.PositionalEncoding(16, 0.5).train()
    out = layer(x)
    clean = x + ref.positional_encoding(50, 16)
    kept = out != 0
    assert 0.3 < kept.float().mean().item() < 0.7
    torch.testing.assert_close(out[kept], 2 * clean[kept])
