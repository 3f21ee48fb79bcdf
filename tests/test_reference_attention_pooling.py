"""The reference answers of attention-pooling (loaded from solutions/, not copied) agree with PyTorch and d2l."""

import pytest
import torch
from d2l import torch as d2l
from helpers import ROOT

from attention_course import notebooks as nbt

ref = nbt.load_module(ROOT / "solutions" / "attention-pooling" / "attention-pooling.ipynb")


@pytest.mark.parametrize("shape,dim", [((2, 3, 5), -1), ((4, 7), 0), ((2, 3, 4, 6), 1)])
def test_softmax_equals_torch(shape, dim):
    x = torch.randn(shape) * 10
    torch.testing.assert_close(ref.softmax(x, dim=dim), torch.softmax(x, dim=dim))


def test_softmax_is_finite_on_huge_inputs():
    x = torch.tensor([[1e4, 0.0, -1e4], [3e38, 3e38, -3e38]])
    out = ref.softmax(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(2))


def test_scores_and_pooling_equal_d2l_unscaled_dot_product_attention():
    """d2l.DotProductAttention scales by 1/sqrt(d); scaling the queries by sqrt(d) undoes it."""
    B, n_q, n_k, d, d_v = 2, 3, 5, 4, 6
    q, k, v = torch.randn(B, n_q, d), torch.randn(B, n_k, d), torch.randn(B, n_k, d_v)
    attention = d2l.DotProductAttention(dropout=0).eval()
    expected = attention(q * d**0.5, k, v)
    weights = ref.softmax(ref.dot_product_scores(q, k))
    torch.testing.assert_close(weights, attention.attention_weights)
    torch.testing.assert_close(ref.attention_pooling(weights, v), expected)


def test_the_chapter_example_scores():
    query = torch.tensor([[5.0, 1.0, 20.0]])
    keys = torch.tensor([[3.0, 12.0, 45.0], [59.0, 2.0, 5.0], [1.0, 43.0, 5.0], [4.0, 3.0, 45.3]])
    torch.testing.assert_close(ref.dot_product_scores(query, keys), torch.tensor([[927.0, 397.0, 148.0, 929.0]]))
