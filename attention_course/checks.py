"""Checks that hidden tests use inside graded notebooks.

- `forbid(...)`: makes built-in operations raise while a student's code runs (e.g. no `torch.softmax` inside the
  student's `softmax`). It watches both the Python API (a `TorchFunctionMode`: `torch.softmax`, `F.softmax`,
  `Tensor.softmax`, `F.scaled_dot_product_attention`, `nn.MultiheadAttention`, ...) and the ATen operators that
  actually run (a `TorchDispatchMode`: `aten::_softmax`, ...), so a detour through another spelling is caught too.
- `LargestIntermediate`: records the largest tensor any operator produces (for memory-bounded algorithms).

These are test helpers, not answers: students may read them.

Under `make grade` the tests run in the trusted judge, outside the student's process, and the student's code runs
in a sandboxed kernel. There `forbid` and `LargestIntermediate` do not watch the judge's own operations: while a
judge is active (`_REMOTE.stack` is a list), entering them only marks the student calls made inside the block,
and the kernel applies the same checks around each such call (attention_course/grading/agent.py).
"""

from __future__ import annotations

import contextlib
import threading

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

SOFTMAX = (
    "softmax",
    "log_softmax",
    "_softmax",
    "_log_softmax",
    "_safe_softmax",
    "special_softmax",
    "special_log_softmax",
)
SDPA = (
    "scaled_dot_product_attention",
    "multi_head_attention_forward",
    "_native_multi_head_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_attention_math",
    "_fused_sdp_choice",
)


_REMOTE = threading.local()  # .stack: the judge's list of checks active around student calls (None: in-process)


def _remote_stack():
    return getattr(_REMOTE, "stack", None)


class ForbiddenCall(AssertionError):
    """Raised when graded code calls something the exercise asks it to implement itself."""


def _name(func) -> str:
    name = getattr(func, "__name__", None) or str(func)
    return name.split("::")[-1].split(".")[0]


class _ForbidFunctions(TorchFunctionMode):
    def __init__(self, names, who):
        super().__init__()
        self.names, self.who = set(names), who

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if _name(func) in self.names:
            raise ForbiddenCall(f"{self.who} must not call {_name(func)}: implement it yourself")
        return func(*args, **(kwargs or {}))


class _ForbidOperators(TorchDispatchMode):
    def __init__(self, names, who):
        super().__init__()
        self.names, self.who = set(names), who

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _name(func.name()) in self.names:
            raise ForbiddenCall(f"{self.who} must not call {func.name()}: implement it yourself")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def forbid(names, who="your answer"):
    """Inside the block, any call of an operation named in `names` raises `ForbiddenCall`.

    Modules are forbidden through their functional forms: `nn.Softmax` calls `softmax`, `nn.MultiheadAttention`
    calls `multi_head_attention_forward`.
    """
    stack = _remote_stack()
    if stack is not None:  # judged from outside: the kernel forbids them around each student call in the block
        entry = ("forbid", tuple(names), who)
        stack.append(entry)
        try:
            yield
        finally:
            stack.remove(entry)
        return
    with _ForbidFunctions(names, who), _ForbidOperators(names, who):
        yield


class LargestIntermediate(TorchDispatchMode):
    """Records the number of elements of the largest tensor produced by any operator inside the block."""

    def __init__(self):
        super().__init__()
        self.numel = 0
        self.op = None

    def __enter__(self):
        stack = _remote_stack()
        self._remote = stack is not None
        if self._remote:  # judged from outside: the kernel measures each student call in the block
            stack.append(("largest", self))
            return self
        return super().__enter__()

    def __exit__(self, *exc_info):
        if self._remote:
            _remote_stack().remove(("largest", self))
            return False
        return super().__exit__(*exc_info)

    def record(self, numel: int, op) -> None:
        """A measurement made elsewhere (the kernel) of code that ran inside this block."""
        if numel > self.numel:
            self.numel, self.op = numel, op

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.op = t.numel(), func.name()
        return out
