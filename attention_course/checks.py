"""Checks that hidden tests use inside graded notebooks.

- `forbid(...)`: makes built-in operations raise while a student's code runs (e.g. no `torch.softmax` inside the
  student's `softmax`). It watches both the Python API (a `TorchFunctionMode`: `torch.softmax`, `F.softmax`,
  `Tensor.softmax`, `F.scaled_dot_product_attention`, `nn.MultiheadAttention`, ...) and the ATen operators that
  actually run (a `TorchDispatchMode`: `aten::_softmax`, ...), so a detour through another spelling is caught too.
- `LargestIntermediate`: records the largest tensor any operator produces (for memory-bounded algorithms); under
  `make grade` the judge also measures the sandbox's memory from outside (`peak_bytes`, read from its cgroup).

Torch's modes are thread-local, so `forbid` also works process-wide while its block runs: the forbidden ATen
operators get a CPU kernel that raises (`torch.library`, every thread of the process, torch's own threads
included), and Python-level entry points that are not ATen operators (`F.multi_head_attention_forward`) are
replaced by ones that raise. On leaving the block it checks that its modes are still on the calling thread's
stacks: a block whose modes were switched off from inside fails with `ForbiddenCall`.

These are test helpers, not answers: students may read them.

Under `make grade` the tests run in the trusted judge, outside the student's process, and the student's code runs
in a sandboxed kernel. There `forbid` and `LargestIntermediate` do not watch the judge's own operations: while a
judge is active (`_REMOTE.stack` is a list), entering them only marks the student calls made inside the block,
and the kernel applies the same checks around each such call (attention_course/grading/agent.py).
"""

from __future__ import annotations

import contextlib
import threading
import warnings

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
    "_sparse_softmax",
    "_sparse_log_softmax",
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
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # never compiled: without this, torch wraps __torch_dispatch__ in a guard whose first
        # call imports torch._dynamo (2-3 s, once per kernel: every graded notebook paid it)

    def __init__(self, names, who):
        super().__init__()
        self.names, self.who = set(names), who

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _name(func.name()) in self.names:
            raise ForbiddenCall(f"{self.who} must not call {func.name()}: implement it yourself")
        return func(*args, **(kwargs or {}))


def _raiser(name: str, who: str):
    def forbidden(*args, **kwargs):
        raise ForbiddenCall(f"{who} must not call {name}: implement it yourself")

    forbidden.__name__ = f"forbidden_{name}"
    return forbidden


@contextlib.contextmanager
def _process_wide(names, who):
    """Every thread of the process: the forbidden ATen operators raise (a CPU kernel registered over theirs for
    the block; `_destroy` puts the original back), and so do forbidden Python functions of torch's modules."""
    import torch.nn.functional as F

    lib = torch.library.Library("aten", "IMPL")
    patched = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel": that is the point
            for name in names:
                packet = getattr(torch.ops.aten, name, None)
                for overload in packet.overloads() if packet is not None else ():
                    qualified = name if overload == "default" else f"{name}.{overload}"
                    for key in ("CPU", "SparseCPU"):  # dense and sparse kernels (torch.sparse.softmax)
                        try:
                            lib.impl(qualified, _raiser(name, who), key)
                        except (RuntimeError, ValueError):
                            pass
        for module in (F,):
            for name in names:
                original = module.__dict__.get(name)
                if callable(original) and not isinstance(original, type) and not hasattr(original, "overloads"):
                    if type(original).__name__ == "function":  # Python functions only (ATen ones are covered)
                        patched.append((module, name, original))
                        setattr(module, name, _raiser(name, who))
        yield
    finally:
        for module, name, original in reversed(patched):
            setattr(module, name, original)
        lib._destroy()


def _on_top(function_mode, dispatch_mode) -> bool:
    """Whether both modes are still the innermost of this thread's stacks (nothing popped them or left a mode of
    its own above them)."""
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    functions, operators = _get_current_function_mode_stack(), _get_current_dispatch_mode_stack()
    return bool(functions) and functions[-1] is function_mode and bool(operators) and operators[-1] is dispatch_mode


@contextlib.contextmanager
def _forbidden(names, who):
    """The in-process check: both modes on this thread, the process-wide kernels, and a check on leaving that
    the modes were not taken off the stack from inside the block (that fails the block with `ForbiddenCall`)."""
    functions, operators = _ForbidFunctions(names, who), _ForbidOperators(names, who)
    with _process_wide(names, who):
        functions.__enter__()
        try:
            operators.__enter__()
        except BaseException:
            functions.__exit__(None, None, None)
            raise
        intact = False
        try:
            yield
        finally:
            intact = _on_top(functions, operators)
            if intact:
                operators.__exit__(None, None, None)
                functions.__exit__(None, None, None)
        if not intact:
            raise ForbiddenCall(f"{who} switched off the grader's check for forbidden calls")


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
    with _forbidden(names, who):
        yield


class LargestIntermediate(TorchDispatchMode):
    """Records the number of elements of the largest tensor produced by any operator inside the block.

    `peak_bytes`: under `make grade`, how much the sandbox's memory use rose above its level at the start of a
    student call inside the block (the largest over those calls), read by the grader from the sandbox's cgroup:
    it counts every thread and process of the sandbox. None where it was not measured (in-process, or where the
    host gives no resettable peak)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # never compiled: without this, torch wraps __torch_dispatch__ in a guard whose first
        # call imports torch._dynamo (2-3 s, once per kernel: every graded notebook paid it)

    def __init__(self):
        super().__init__()
        self.numel = 0
        self.op = None
        self.peak_bytes = None

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
        from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

        modes = _get_current_dispatch_mode_stack()
        if not modes or modes[-1] is not self:  # popped from inside the block: nothing was measured
            raise ForbiddenCall("the code in the block switched off the grader's memory check")
        return super().__exit__(*exc_info)

    def record(self, numel: int, op) -> None:
        """A measurement made elsewhere (the kernel) of code that ran inside this block."""
        if numel > self.numel:
            self.numel, self.op = numel, op

    def record_peak(self, nbytes: int) -> None:
        """A measurement made from outside the sandbox (its cgroup) of a student call inside this block."""
        self.peak_bytes = max(self.peak_bytes or 0, int(nbytes))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.op = t.numel(), func.name()
        return out
