"""What the pages of "Attention in today's language models" share: rotary embeddings in both layouts, a causal
self-attention layer with grouped key/value heads, a key-value cache and an optional sliding window, and a tiny
decoder-only language model to generate with.

These are the pages' demonstrations, written with PyTorch's built-ins (`torch.polar` for the rotations,
`F.scaled_dot_product_attention(..., enable_gqa=True)` for attention); the assignment asks for the same ideas
written out by hand, with its own conventions (a cache that is exactly `(K, V)`).

- `rope_complex(x, positions, base)`: the interleaved layout (RoFormer; Meta's original Llama code), pairs
  `(x[2j], x[2j+1])` as complex numbers times `e^(i p base^(-2j/d))`.
- `rope_rotate_half(x, positions, base)`: the half-split layout of GPT-NeoX and of Hugging Face's Llama, where
  feature `j` is paired with feature `j + d/2`.
- `interleaved_to_half(d)`: the feature permutation that turns one layout into the other (applied to the rows of
  each head of a query or key projection, it converts a checkpoint).
- `CachedAttention`: causal self-attention, `heads` query heads sharing `groups` key/value heads, optional RoPE
  and sliding window, `forward(x, cache=None) -> (out, cache)` with `cache = KVCache(keys, values, next_pos)`.
- `TinyLM` and `generate(model, prompt, steps, use_cache)`: greedy decoding with or without the cache.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def rope_inverse_frequencies(d: int, base: float = 10000.0) -> torch.Tensor:
    """omega_j = base^(-2j/d) for j = 0 .. d/2 - 1: pair j turns by
    p * omega_j radians at position p."""
    exponents = torch.arange(0, d, 2, dtype=torch.float64) / d  # 2j/d
    return torch.pow(float(base), -exponents)


def _angles(n: int, d: int, positions, base: float) -> torch.Tensor:
    positions = torch.arange(n) if positions is None else positions
    omega = rope_inverse_frequencies(d, base)  # (d/2,)
    return torch.outer(positions.to(torch.float64), omega)  # (n, d/2)


def rope_complex(
    x: torch.Tensor,
    positions=None,
    base: float = 10000.0,
) -> torch.Tensor:
    """Interleaved RoPE as complex multiplication (the layout of the
    RoFormer paper and of the assignment)."""
    d = x.shape[-1]
    angles = _angles(x.shape[-2], d, positions, base).float()  # (n, d/2)
    phase = torch.polar(torch.ones_like(angles), angles)  # e^(i angle)
    pairs = x.float().reshape(*x.shape[:-1], d // 2, 2).contiguous()
    as_complex = torch.view_as_complex(pairs)  # (..., n, d/2)
    turned = torch.view_as_real(as_complex * phase)  # (..., n, d/2, 2)
    return turned.reshape(x.shape).to(x.dtype)


def rope_rotate_half(x: torch.Tensor, positions=None, base: float = 10000.0) -> torch.Tensor:
    """Half-split RoPE (GPT-NeoX, Hugging Face Llama): features j and j + d/2 form pair j."""
    d = x.shape[-1]
    angles = _angles(x.shape[-2], d, positions, base).float().repeat(1, 2)  # (n, d): the d/2 angles twice
    first, second = x.chunk(2, dim=-1)
    return x * angles.cos() + torch.cat((-second, first), dim=-1) * angles.sin()


def interleaved_to_half(d: int) -> torch.Tensor:
    """Indices `perm` with `x[..., perm]` in half-split order: features 0, 2, 4, ... then 1, 3, 5, ..."""
    return torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))


class KVCache(NamedTuple):
    keys: torch.Tensor  # (batch, groups, cached steps, head_dim), after RoPE
    values: torch.Tensor  # (batch, groups, cached steps, head_dim)
    next_pos: int  # absolute position of the next token


def allowed_keys(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Bool (n_q, n_k): key at absolute position key_pos[j] visible to the query at query_pos[i] (True = attend)."""
    behind = query_pos[:, None] - key_pos[None, :]  # how many steps back each key is
    visible = behind >= 0
    return visible if window is None else visible & (behind < window)


class CachedAttention(nn.Module):
    """Causal self-attention with `groups` key/value heads for `heads` query heads (SDPA does the attention)."""

    def __init__(
        self, d_model: int, heads: int, groups: int, rope_base: float | None = None, window: int | None = None
    ):
        super().__init__()
        self.heads, self.groups, self.head_dim = heads, groups, d_model // heads
        self.rope_base, self.window = rope_base, window
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_model, 2 * groups * self.head_dim, bias=False)  # keys and values in one matrix
        self.o = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None):
        batch, n, _ = x.shape
        start = 0 if cache is None else cache.next_pos
        pos = torch.arange(start, start + n, device=x.device)  # absolute
        q = self.q(x).unflatten(-1, (self.heads, self.head_dim))
        q = q.transpose(1, 2)  # (batch, heads, n, hd)
        kv = self.kv(x).unflatten(-1, (2, self.groups, self.head_dim))
        k, v = kv.permute(2, 0, 3, 1, 4)  # each (batch, groups, n, hd)
        if self.rope_base is not None:
            q = rope_complex(q, pos, self.rope_base)
            k = rope_complex(k, pos, self.rope_base)
        if cache is not None:
            k = torch.cat((cache.keys, k), dim=2)  # (batch, groups, all, hd)
            v = torch.cat((cache.values, v), dim=2)
        first = start + n - k.shape[2]  # absolute position of the first key
        key_pos = torch.arange(first, start + n, device=x.device)
        mask = allowed_keys(pos, key_pos, self.window)  # bottom-right
        sdpa = F.scaled_dot_product_attention  # enable_gqa: no copies
        out = sdpa(q, k, v, attn_mask=mask, enable_gqa=True)  # (b, h, n, hd)
        if self.window is not None:  # later tokens look back < window steps
            first_kept = max(k.shape[2] - (self.window - 1), 0)
            k, v = k[:, :, first_kept:], v[:, :, first_kept:]
        out = self.o(out.transpose(1, 2).flatten(2))  # (batch, n, d_model)
        return out, KVCache(k, v, start + n)


class Block(nn.Module):
    def __init__(self, d_model, heads, groups, rope_base, window):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CachedAttention(d_model, heads, groups, rope_base, window)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x, cache=None):
        h, cache = self.attn(self.norm1(x), cache)
        x = x + h
        return x + self.mlp(self.norm2(x)), cache


class TinyLM(nn.Module):
    """A decoder-only language model with random weights: enough to show that caching changes nothing but speed."""

    def __init__(self, vocab=100, d_model=64, layers=2, heads=4, groups=2, rope_base=10000.0, window=None):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, groups, rope_base, window) for _ in range(layers))
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor, caches: list | None = None):
        """tokens (batch, n) -> logits (batch, n, vocab) and the caches."""
        x = self.embed(tokens)
        caches = caches or [None] * len(self.blocks)
        new = []
        for block, cache in zip(self.blocks, caches):
            x, c = block(x, cache)
            new.append(c)
        return self.head(x), new


@torch.no_grad()
def generate(model: TinyLM, prompt: torch.Tensor, steps: int, use_cache: bool = True):
    """Greedy decoding. Returns (tokens (batch, len(prompt) + steps), logits of each generated token)."""
    tokens, caches, logits_seen = prompt, None, []
    feed = prompt
    for _ in range(steps):
        if use_cache:
            logits, caches = model(feed, caches)  # only the new tokens; the past comes from the caches
        else:
            logits, _ = model(tokens)  # the whole sequence, every step
        last = logits[:, -1]
        logits_seen.append(last)
        feed = last.argmax(-1, keepdim=True)  # (batch, 1)
        tokens = torch.cat((tokens, feed), dim=1)
    return tokens, torch.stack(logits_seen, dim=1)


def cache_bytes(caches) -> int:
    """Bytes held by a list of per-layer caches (keys and values)."""
    return sum(c.keys.nbytes + c.values.nbytes for c in caches)
