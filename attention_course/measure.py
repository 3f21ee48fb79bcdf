"""Measuring time and peak memory of a function, on the CPU and on CUDA (used by the efficient-attention pages
and by `benchmarks/`).

- `seconds(fn)`: the fastest wall time of `fn()` over a few repeats after a warm-up (CUDA is synchronised); on
  a shared machine the fastest run is the one least disturbed by other jobs.
- `peak_bytes(fn)`: the largest amount of tensor memory alive at once while `fn()` runs, not counting what
  existed before. On CUDA it is the caching allocator's own high-water mark (`torch.cuda.max_memory_allocated`).
  On the CPU PyTorch keeps no such counter, so a `TorchDispatchMode` adds up the bytes of every tensor an
  operator returns and subtracts them when the tensor is freed. What a fused kernel allocates *inside* itself and
  frees before returning (the scratch blocks of `F.scaled_dot_product_attention`'s CPU flash kernel) is not
  seen, so on the CPU SDPA's figure is a lower bound.
"""

from __future__ import annotations

import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def seconds(fn, repeats: int = 5, warmup: int = 1, device="cpu") -> float:
    """The fastest of `repeats` wall-clock timings of `fn()`, in seconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensors created inside the block (views are not new memory) and their peak."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # never compiled: without this, torch wraps __torch_dispatch__ in a guard whose first
        # call imports torch._dynamo (2-3 s, once per kernel: every graded notebook paid it)

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0

    def _freed(self, nbytes):
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not t._is_view() and t.device.type == "cpu":
                nbytes = t.untyped_storage().nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._freed, nbytes)
        return out


def peak_bytes(fn, device="cpu") -> int:
    """Peak tensor memory (bytes) allocated while `fn()` runs, above what was allocated before."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with LiveTensorBytes() as tracker:
        fn()
    return tracker.peak


def naive_attention(queries, keys, values, causal=False):
    """Textbook attention: the whole (n_q, n_k) score matrix, then softmax,
    then the weighted sum."""
    d = queries.shape[-1]
    scores = queries @ keys.transpose(-2, -1) / d**0.5  # (B, n_q, n_k)
    if causal:
        n_q, n_k = scores.shape[-2:]
        ones = torch.ones(n_q, n_k, dtype=torch.bool, device=scores.device)
        future = ones.triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ values
