"""Blockwise attention as the efficient-attention pages present it: attention of all queries over one block of
keys gives a *partial result* (an unnormalised output, a row max and a row sum); partial results merge exactly,
so the keys can be visited block by block and the (n_q, n_k) score matrix never exists.

The pages include this file's functions (`literalinclude`) and run them, so their lines stay within 78 characters.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class Partial(NamedTuple):
    """Attention of every query over *some* keys, not yet normalised."""

    out: torch.Tensor  # (B, n_q, d_v): sum_j exp(s_j - max) v_j, keys seen
    max: torch.Tensor  # (B, n_q, 1): largest score seen (-inf: saw no key)
    sum: torch.Tensor  # (B, n_q, 1): sum_j exp(s_j - max) over the keys seen


def exp_minus(s, top):
    """exp(s - top), and exactly 0 where s = -inf (a masked score, or a row
    that saw no key; there top = -inf too and exp(-inf - (-inf)) is NaN)."""
    return torch.where(s == float("-inf"), 0.0, torch.exp(s - top))


def partial_attention(queries, keys, values, scale, allowed=None) -> Partial:
    """One block: `keys`, `values` hold the block's rows; `allowed`
    (n_q, block) is True where a query may look."""
    s = torch.einsum("bqd,bkd->bqk", queries, keys) * scale  # (B,n_q,block)
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    top = s.amax(dim=-1, keepdim=True)  # (B, n_q, 1); -inf: row sees no key
    e = exp_minus(s, top)  # (B, n_q, block); a row that sees no key: all 0
    out = torch.einsum("bqk,bkv->bqv", e, values)
    return Partial(out, top, e.sum(dim=-1, keepdim=True))


def merge(a: Partial, b: Partial) -> Partial:
    """Two partial results over disjoint key sets -> the partial result
    over their union (exact)."""
    top = torch.maximum(a.max, b.max)  # -inf only if neither saw a key
    wa = exp_minus(a.max, top)  # bring a to the common max; 0 if a saw none
    wb = exp_minus(b.max, top)
    return Partial(a.out * wa + b.out * wb, top, a.sum * wa + b.sum * wb)


def blockwise_attention(queries, keys, values, block_size=64, causal=False):
    """softmax(Q K^T / sqrt(d)) V over key blocks; with `causal`, query i
    sees keys j <= i and blocks entirely in the future are skipped."""
    n_q, n_k = queries.shape[-2], keys.shape[-2]
    scale = 1 / math.sqrt(queries.shape[-1])
    rows = torch.arange(n_q, device=queries.device)[:, None]  # (n_q, 1)
    result = None
    for lo in range(0, n_k, block_size):
        if causal and lo > n_q - 1:
            break  # no query reaches this far
        hi = min(lo + block_size, n_k)
        cols = torch.arange(lo, hi, device=queries.device)[None, :]
        allowed = cols <= rows if causal else None  # (n_q, block) booleans
        block_k, block_v = keys[:, lo:hi], values[:, lo:hi]
        part = partial_attention(queries, block_k, block_v, scale, allowed)
        result = part if result is None else merge(result, part)
    return result.out / result.sum
