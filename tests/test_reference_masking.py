"""The reference answers of masking (loaded from solutions/, not copied) agree with PyTorch and d2l."""

import pytest
import torch
import torch.nn.functional as F
from d2l import torch as d2l
from helpers import ROOT
from torch import nn

from attention_course import notebooks as nbt

ref = nbt.load_module(ROOT / "solutions" / "masking" / "masking.ipynb")


@pytest.mark.parametrize("n", [1, 2, 5, 64])
def test_causal_mask_is_the_complement_of_pytorchs_square_subsequent_mask(n):
    mask = ref.causal_mask(n)
    assert mask.dtype == torch.bool and mask.shape == (n, n)
    # nn.Transformer's float mask: 0 where attending is allowed, -inf where it is not
    assert torch.equal(mask, nn.Transformer.generate_square_subsequent_mask(n) == 0)
    assert torch.equal(mask, torch.tril(torch.ones(n, n, dtype=torch.bool)))


@pytest.mark.parametrize("n_q", [1, 4, 9])
def test_causal_mask_as_sdpa_attn_mask_equals_is_causal(n_q):
    q, k, v = torch.randn(2, n_q, 8), torch.randn(2, n_q, 8), torch.randn(2, n_q, 3)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=ref.causal_mask(n_q)),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
    )


def _projections(module, x):
    return module.W_query(x), module.W_key(x), module.W_value(x)


@pytest.mark.parametrize(
    "B,n,context,d_in,d_out,bias",
    [(2, 6, 6, 5, 3, False), (3, 4, 10, 8, 8, True), (1, 1, 7, 4, 2, False), (4, 12, 16, 6, 10, True)],
)
def test_causal_self_attention_equals_sdpa_is_causal(B, n, context, d_in, d_out, bias):
    torch.manual_seed(n)
    module = ref.CausalSelfAttention(d_in, d_out, context, dropout=0.3, qkv_bias=bias).eval()
    x = torch.randn(B, n, d_in)
    with torch.no_grad():
        expected = F.scaled_dot_product_attention(*_projections(module, x), is_causal=True)
        torch.testing.assert_close(module(x), expected)


def test_causal_self_attention_equals_nn_multihead_attention_with_its_mask_convention():
    """One head, no biases, identity output projection; nn.MultiheadAttention's mask is True = masked out."""
    torch.manual_seed(0)
    d, n = 6, 7
    module = ref.CausalSelfAttention(d, d, n, dropout=0.0).eval()
    mha = nn.MultiheadAttention(d, num_heads=1, bias=False, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([module.W_query.weight, module.W_key.weight, module.W_value.weight]))
        mha.out_proj.weight.copy_(torch.eye(d))
        x = torch.randn(3, n, d)
        expected, _ = mha(x, x, x, attn_mask=~ref.causal_mask(n), need_weights=False)
        torch.testing.assert_close(module(x), expected)


def test_causal_self_attention_equals_d2l_with_per_query_valid_lens():
    """d2l's decoder masks the future with valid_lens (B, n) = 1, 2, ..., n: the same causal attention."""
    torch.manual_seed(1)
    B, n, d_in, d_out = 2, 5, 4, 6
    module = ref.CausalSelfAttention(d_in, d_out, 8, dropout=0.0).eval()
    x = torch.randn(B, n, d_in)
    valid_lens = torch.arange(1, n + 1).repeat(B, 1)
    attention = d2l.DotProductAttention(dropout=0.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), attention(*_projections(module, x), valid_lens))


def test_causal_self_attention_output_does_not_depend_on_the_future():
    torch.manual_seed(2)
    module = ref.CausalSelfAttention(3, 4, 10, dropout=0.0).eval()
    x = torch.randn(2, 10, 3)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(module(x)[:, :6], module(changed)[:, :6])
        torch.testing.assert_close(module(x)[:, :6], module(x[:, :6]))
        assert not torch.allclose(module(x)[:, 6:], module(changed)[:, 6:])


def test_causal_self_attention_dropout_acts_in_training_only():
    torch.manual_seed(3)
    module = ref.CausalSelfAttention(4, 4, 6, dropout=0.5)
    x = torch.randn(2, 6, 4)
    with torch.no_grad():
        expected = F.scaled_dot_product_attention(*_projections(module, x), is_causal=True)
        assert not torch.allclose(module.train()(x), expected)
        torch.testing.assert_close(module.eval()(x), expected)
