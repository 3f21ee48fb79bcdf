"""attention_course.blockwise (the code the blockwise-attention page includes and runs): equal to PyTorch's
scaled_dot_product_attention for every block size, causal and not, n_q != n_k, and on extreme scores, where a
row of a block that a query cannot see must not poison the merge (its maximum is -inf, not 0)."""

import pytest
import torch
import torch.nn.functional as F

from attention_course.blockwise import Partial, blockwise_attention, merge, partial_attention


def sdpa(q, k, v, causal):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def test_reported_case_is_finite_and_equal():
    """q = 30 e1, k = -30 e1, n = 3, block size 1, causal: every visible score is -900, far below -104.
    The old code (row max 0 for an empty block) returned NaN in rows 0 and 1."""
    q = torch.zeros(1, 3, 1)
    q[..., 0] = 30.0
    k = -q
    v = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    out = blockwise_attention(q, k, v, block_size=1, causal=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, sdpa(q, k, v, True))


def extreme_inputs(n_q, n_k, seed, scale=30.0, d=8, d_v=5):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, n_q, d, generator=g, dtype=torch.float64) * scale
    k = torch.randn(2, n_k, d, generator=g, dtype=torch.float64) * scale
    k[:, :, 0] -= 3 * scale  # many rows whose scores all lie far below -104
    q[:, :, 0] = q[:, :, 0].abs() + scale
    v = torch.randn(2, n_k, d_v, generator=g, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize("n_q,n_k", [(7, 7), (4, 9), (9, 4), (1, 6)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_equal_to_sdpa_for_every_block_size(n_q, n_k, causal, scale):
    q, k, v = extreme_inputs(n_q, n_k, seed=n_q * 10 + n_k, scale=scale)
    scores = (q @ k.mT) / q.shape[-1] ** 0.5
    if scale == 30.0:
        assert scores.abs().max() > 1000 and (scores.amax(-1) < -104).any()  # the inputs are extreme indeed
    expected = sdpa(q, k, v, causal)
    assert torch.isfinite(expected).all()
    for block_size in range(1, n_k + 1):
        out = blockwise_attention(q, k, v, block_size, causal=causal)
        assert torch.isfinite(out).all(), (block_size, causal)
        torch.testing.assert_close(out, expected, msg=f"block_size={block_size}, causal={causal}")


def test_float32_extreme_scores_stay_finite_and_close():
    q, k, v = (t.float() for t in extreme_inputs(6, 6, seed=3))
    for block_size in range(1, 7):
        for causal in (False, True):
            out = blockwise_attention(q, k, v, block_size, causal=causal)
            assert torch.isfinite(out).all()
            # scores near 1e3 carry float32 rounding of ~1e-4 into the exponent, in SDPA as well
            torch.testing.assert_close(out, sdpa(q, k, v, causal), atol=1e-3, rtol=1e-3)


def test_empty_partial_is_neutral_in_merge():
    """A block no query may see: max -inf, sum 0; merging it (either side, or with another empty one) changes
    nothing and makes no NaN."""
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(1, 3, 4, generator=g), torch.randn(1, 5, 4, generator=g), torch.randn(1, 5, 2, generator=g)
    empty = partial_attention(q, k, v, 0.5, allowed=torch.zeros(3, 5, dtype=torch.bool))
    assert torch.isneginf(empty.max).all() and (empty.sum == 0).all() and (empty.out == 0).all()
    full = partial_attention(q, k, v, 0.5)
    for merged in (merge(empty, full), merge(full, empty)):
        assert all(torch.equal(x, y) for x, y in zip(merged, full, strict=True))
    both = merge(empty, empty)
    assert isinstance(both, Partial) and not any(torch.isnan(t).any() for t in both)
    assert torch.isneginf(both.max).all()
