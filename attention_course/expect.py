"""Expected values that the code under test cannot move (helpers for the hidden tests; students may read them).

The rule every test cell follows: an expected value is computed only from tensors the test owns (inputs it made,
weights it drew), with plain PyTorch operations (`F.linear`, `F.scaled_dot_product_attention`, ...), never by
calling the student's layers and never from a module's parameters or an input as they are *after* the student's
code ran. After each call the test checks that what it sent is unchanged:

    weights = set_weights(module, {"W_query.weight": (d_out, d_in), "W_query.bias": (d_out,), ...})
    x = torch.randn(B, n, d_in)
    x_kept = x.clone()
    out = module(x)
    assert_unchanged(module_to_grade, kept)      # "your forward changed its own weights"
    assert_same(x, x_kept, "x")                  # "your code modified its input x in place"
    q = F.linear(x_kept, weights["W_query.weight"], weights["W_query.bias"])   # the expectation: copies only

The same code works in the student's kernel (plain `nbgrader autograde`, Validate) and in the trusted judge of
`make grade`, where `module` is a handle on the student's object: reading `module.W_query.weight` there returns a
copy of the student's parameter, and `copy_` on it under `torch.no_grad()` writes through to the student's module.
The weights are drawn from torch's global generator, which the judge seeds per student inside hidden tests.
"""

from __future__ import annotations

import math

import torch


def _lookup(module, name: str):
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def set_weights(module, shapes: dict, scale: float = 1.0, std: float | None = None) -> dict[str, torch.Tensor]:
    """Draw a value for each named parameter ("W_query.weight": shape), write it into `module`, return copies.

    Each value is normal with standard deviation `std`, or by default `scale / sqrt(fan_in)` (the last dimension
    of a weight; a bias uses its own size). A parameter that is missing or has another shape fails the test with a
    clear message.
    The returned tensors are the test's own: compute expected values from them only.
    """
    copies: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        try:
            param = _lookup(module, name)
        except AttributeError:
            raise Verdict(f"{name} is missing") from None
        if not isinstance(param, torch.Tensor):
            raise Verdict(f"{name} must be a tensor (a parameter)")
        if tuple(param.shape) != shape:
            raise Verdict(f"{name} has the wrong shape", f"{name} has shape {tuple(param.shape)}, expected {shape}")
        value = torch.randn(shape) * (std if std is not None else scale / math.sqrt(max(shape[-1], 1)))
        with torch.no_grad():
            param.copy_(value)
        copies[name] = value.clone()
    _compare(module, copies, "the weights the test set did not stay in your module (set before the call)")
    return copies


class Verdict(AssertionError):
    """A failure these helpers (or the judge) state: `public` names no size or value, so it may be shown even
    after hidden inputs reached the student's kernel; the full text (str) is for in-kernel runs."""

    def __init__(self, public: str, detail: str | None = None):
        super().__init__(detail or public)
        self.public = public


def _compare(module, copies: dict[str, torch.Tensor], message: str) -> None:
    for name, value in copies.items():
        try:
            now = _lookup(module, name)
        except AttributeError:
            raise Verdict(f"{message}: {name} is gone") from None
        same = (
            isinstance(now, torch.Tensor)
            and tuple(now.shape) == tuple(value.shape)
            and torch.equal(now.detach().as_subclass(torch.Tensor).to(value.dtype), value)
        )
        if not same:
            raise Verdict(f"{message}: {name}")


def assert_unchanged(module, copies: dict[str, torch.Tensor]) -> None:
    """Fail if any parameter named in `copies` no longer holds the test's value (read back after a call)."""
    _compare(module, copies, "your forward changed its own weights")


def assert_same(tensor: torch.Tensor, kept: torch.Tensor, what: str = "input") -> None:
    """Fail if `tensor` (an input the test passed) differs from the copy the test kept before the call."""
    if not torch.equal(tensor, kept):
        raise Verdict(f"your code modified its input {what} in place")
