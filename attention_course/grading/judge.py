"""The trusted judge: runs every test cell (visible asserts and hidden block) outside the student's process.

The test cell's own source runs here, in a namespace where each name the assignment asks students to define
(`softmax`, `MultiHeadAttention`, ...) is a `Remote`: a handle on the student's object in the sandboxed kernel.
Using it becomes a request to the kernel's agent (agent.py) answered with plain data (wire.py):

- calling it sends the arguments (tensors as bytes, numbers, handles) and receives the result as plain data; a
  result that is not data (a module, a bound method) comes back as another `Remote`;
- reading an attribute (`m.W_q.weight`, `m.attention_weights`, `layer.in_features`) is a request; parameters come
  back as tensors that write through (`weight.copy_(w)` under `torch.no_grad()` writes the student's parameter);
- iterating (`m.parameters()`), indexing and `len` are requests; `isinstance(m, nn.Linear)` is answered from the
  PyTorch class the object derives from;
- assigning one of those names in a test (`masked_softmax = trusted`, `globals()["masked_softmax"] = fn`) puts a
  stand-in into the kernel whose calls come back here, so the trusted function runs in the judge;
- `checks.forbid(...)` and `checks.LargestIntermediate()` blocks mark the student calls made inside them, and the
  kernel applies the check around each call.

A test cell earns its points only when its code ran to the end here. The kernel's replies are data and nothing
else: no status, no error flag, no output of the kernel is believed, and a kernel that is dead, silent or
answers garbage makes the test fail. Hidden-test source never leaves this process; inside the hidden block
`torch.manual_seed(s)` seeds from a secret key (per student, submission and cell), so inputs cannot be
predicted, and the generator is re-seeded from the key after every call into the kernel.

The same test cells run unchanged in-kernel under plain `nbgrader autograde` and Validate.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import hashlib
import hmac
import io
import logging
import math
import os
import re
import socket
import sys
import time

import torch

from attention_course import checks
from attention_course.expect import Verdict
from attention_course.grading import wire
from attention_course.grading.ids import escape
from attention_course.grading.records import RunStatus
from attention_course.notebooks import HIDDEN_BEGIN, HIDDEN_END

log = logging.getLogger(__name__)

MAX_TEST_OUTPUT = 64 * 1024
# A stand-in (a trusted function a test put in the kernel) runs here with arguments the kernel chose. Before it
# runs they are sized against what this test itself sent to the kernel (its scale: the largest tensor, and the
# largest number or dimension): a tensor may hold at most STANDIN_FACTOR times the test's largest tensor (or
# STANDIN_FLOOR_ELEMENTS), a number may be at most STANDIN_FACTOR times the test's largest number or dimension
# (or STANDIN_FLOOR_NUMBER), and all tensors of one call together at most STANDIN_MAX_ELEMENTS. Whatever the
# trusted function then does runs under a memory limit of its own (`_standin_memory`: this process's address
# space may grow by STANDIN_MEMORY while it runs, so an allocation beyond fails as an error of that call) and
# the test's own deadline.
STANDIN_FACTOR = 4
STANDIN_FLOOR_ELEMENTS = 2**20
STANDIN_FLOOR_NUMBER = 4096
STANDIN_MAX_ELEMENTS = 2**26
STANDIN_MEMORY = 2 * 2**30


class RemoteError(Exception):
    """The student's code raised (in the kernel); type and message are the student's, escaped. The message is
    shown only where `Judge.run_test` trusts the inputs the kernel has seen (`_trusted_failure`)."""


_REMOTE_ERRORS: dict[str, type] = {}
_MAPPED = {
    name: getattr(builtins, name)
    for name in (
        "AttributeError",
        "TypeError",
        "ValueError",
        "RuntimeError",
        "IndexError",
        "KeyError",
        "NotImplementedError",
        "AssertionError",
        "ZeroDivisionError",
        "NameError",
        "LookupError",
        "ArithmeticError",
    )
}


def remote_error(kind: str, message: str) -> RemoteError:
    kind = kind if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,59}", str(kind)) else "Exception"
    base = _MAPPED.get(kind, AssertionError if kind == "ForbiddenCall" else None)
    if base is None:
        klass = RemoteError
    else:
        klass = _REMOTE_ERRORS.setdefault(kind, type(kind, (RemoteError, base), {"__module__": "student"}))
    err = klass(f"(raised by your code) {escape(message)}")
    err.kind = kind
    return err


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,59}")
WITHHELD_OUTPUT = "[grader: the test's output is not shown once hidden inputs have reached your kernel]\n"


# Exception type names that may be shown once hidden inputs reached the kernel: Python's and the course's own.
# Any other name is the student's choice (a class named after a hidden shape carries it out): shown as "Exception".
_KNOWN_ENAMES = frozenset(
    [
        *_MAPPED,
        "Exception",
        "ForbiddenCall",
        "KernelLost",
        "StandInRefused",
        "MemoryError",
        "RecursionError",
        "OverflowError",
        "StopIteration",
        "TimeoutError",
        "OSError",
        "ImportError",
        "ModuleNotFoundError",
        "UnicodeError",
        "SystemError",
        "UnboundLocalError",
        "IndentationError",
        "SyntaxError",
    ]
)


def _ename(exc: BaseException, trusted_only: bool = False) -> str:
    name = getattr(exc, "kind", None) if isinstance(exc, RemoteError) else type(exc).__name__
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        return "Exception"
    return name if not trusted_only or name in _KNOWN_ENAMES else "Exception"


def _static_text(node) -> str | None:
    """An assert's message as the test's author wrote it: a string constant as is, an f-string with each
    interpolated value shown as `...` (the values may be the student's outputs on hidden inputs)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else "..."
            for part in node.values
        )
    return None


def _failing_line(exc: BaseException, gid: str) -> tuple[int | None, bool]:
    """The line of the test cell where `exc` came out, and whether it was raised there (not deeper)."""
    tb, line, innermost = exc.__traceback__, None, False
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == f"<test {gid}>":
            line, innermost = tb.tb_lineno, tb.tb_next is None
        tb = tb.tb_next
    return line, innermost


def _trusted_failure(exc: BaseException, gid: str, code: str, hidden: bool) -> dict:
    """The record of a test that failed after hidden inputs reached the kernel: the test's name (the caller's),
    the exception's type name, and only text the judge wrote, never a message of the student's code nor of a
    library that formatted the student's values (`torch.testing.assert_close` prints shapes and numbers).

    Trusted text, in order: an `assert` of the test itself that failed gives its message with every interpolated
    value replaced by `...` (the f-string's fixed text is the test author's; what it interpolates may be the
    student's output on hidden inputs); anything else in a hidden block gives one fixed sentence; in a visible
    block (public source) the failing line is quoted."""
    ename = _ename(exc, trusted_only=True)
    if isinstance(exc, Verdict) and not isinstance(exc, RemoteError):  # the judge's or expect's own text
        return {"status": RunStatus.ERROR, "ename": ename, "evalue": escape(exc.public, 500)}
    line, innermost = _failing_line(exc, gid)
    static = None
    if type(exc) is AssertionError and innermost and line is not None:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Assert) and node.lineno <= line <= (node.end_lineno or node.lineno):
                static = _static_text(node.msg) if node.msg is not None else None
                if static is None:
                    static = "a hidden check failed" if hidden else "an assert failed"
                break
    if static is not None:
        message = static
    elif hidden:
        message = (
            "raised by your code on a hidden test input" if isinstance(exc, RemoteError) else "a hidden check failed"
        ) + " (details are not shown: they could show the hidden inputs)"
    else:
        lines = code.splitlines()
        quoted = lines[line - 1].strip() if line is not None and 0 < line <= len(lines) else ""
        message = (
            (f"at `{escape(quoted, 200)}`: " if quoted else "")
            + ("raised by your code" if isinstance(exc, RemoteError) else "failed")
            + " (its message is not shown: your kernel has already seen hidden test inputs)"
        )
    return {"status": RunStatus.ERROR, "ename": ename, "evalue": escape(message, 500)}


REFUSED = "refused: your code asked a grader's stand-in for more than this test's own sizes"


class StandInRefused(AssertionError):
    """The student's code asked a grader's stand-in for more than this test ever sent it (the student's fault)."""


class _Scale:
    """The sizes a test sent to the kernel so far: its largest tensor (elements) and largest number or dim."""

    def __init__(self):
        self.elements, self.number = 0, 0

    def note(self, value, depth: int = 0) -> None:
        if depth > wire.MAX_DEPTH:
            return
        if isinstance(value, torch.Tensor):
            self.elements = max(self.elements, value.numel())
            self.number = max([self.number, *value.shape])
        elif type(value) in (int, float) and math.isfinite(value):
            self.number = max(self.number, abs(value))
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.note(item, depth + 1)
        elif isinstance(value, dict):
            for item in value.values():
                self.note(item, depth + 1)

    def refuse(self, value) -> str | None:
        """Why `value` (a stand-in's arguments) is beyond this test's sizes, or None."""
        most_elements = max(STANDIN_FLOOR_ELEMENTS, STANDIN_FACTOR * self.elements)
        most_number = max(STANDIN_FLOOR_NUMBER, STANDIN_FACTOR * self.number)
        total = 0
        stack = [(value, 0)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, torch.Tensor):
                total += item.numel()
                if item.numel() > most_elements or total > STANDIN_MAX_ELEMENTS:
                    return f"a tensor of {item.numel()} elements (the test's largest: {self.elements})"
                if any(size > most_number for size in item.shape):  # an empty tensor's sizes can still size work
                    return f"a tensor of shape {tuple(item.shape)} (the test's largest size: {self.number})"
                integral = not (item.dtype.is_floating_point or item.dtype.is_complex or item.dtype == torch.bool)
                if item.numel() and integral:  # integers in a tensor may be used as sizes too
                    biggest = item.abs().max().item()
                    if biggest > most_number:
                        return f"a tensor holding {biggest} (the test's largest number: {self.number})"
            elif type(item) in (int, float):
                if not math.isfinite(item) or abs(item) > most_number:
                    return f"the number {item!r} (the test's largest: {self.number})"
            elif isinstance(item, (list, tuple)):
                stack += [(v, depth + 1) for v in item]
            elif isinstance(item, dict):
                stack += [(v, depth + 1) for v in item.values()]
        return None


@contextlib.contextmanager
def _standin_memory(extra: int):
    """While a stand-in runs, this process's address space may grow by `extra` bytes at most (the soft
    RLIMIT_AS; the hard limit is left as it is): a larger allocation fails (torch's RuntimeError, MemoryError)
    as an error of that call instead of taking the grading host's memory."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as fh:
            mapped = int(fh.read().split()[0]) * resource.getpagesize()
        limit = mapped + extra
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _test_hook_judge_death(args, kwargs) -> None:
    """For the grader's own tests only: with ATTENTION_COURSE_TEST_JUDGE_DEATH set (never in a real run), a
    stand-in called with that exact string as an argument kills this process, as the kernel's OOM killer would a
    judge, so that the pool's recovery can be tested deterministically (tests/test_grading_bounded.py)."""
    marker = os.environ.get("ATTENTION_COURSE_TEST_JUDGE_DEATH")
    if marker and any(type(a) is str and a == marker for a in [*args, *kwargs.values()]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class KernelLost(Exception):
    """The kernel did not answer in time, closed the connection or sent something that is not plain data."""


def _module_class(name) -> type | None:
    """A PyTorch module class named 'module:qualname', only if that module is already imported here."""
    if not isinstance(name, str) or ":" not in name:
        return None
    module, qualname = name.split(":", 1)
    obj = sys.modules.get(module) if (module == "torch" or module.startswith("torch.")) else None
    for part in qualname.split("."):
        obj = getattr(obj, part, None) if obj is not None else None
    return obj if isinstance(obj, type) and issubclass(obj, torch.nn.Module) else None


class Remote(wire.Handle):
    """A handle on an object in the student's kernel. Every use is a request; results are plain data."""

    def __init__(self, judge: Judge, hid: int, info: dict):
        object.__setattr__(self, "_judge", judge)
        object.__setattr__(self, "hid", hid)
        object.__setattr__(self, "info", info)
        object.__setattr__(self, "_cls", _module_class(info.get("cls")))

    @property
    def __class__(self):  # isinstance(m, nn.Module) / nn.Linear: the PyTorch class the student's object derives from
        return self._cls or Remote

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._judge.request({"op": "getattr", "h": self.hid, "name": name})

    def __setattr__(self, name, value):
        raise AttributeError("the grader does not set attributes on your objects")

    def __call__(self, *args, **kwargs):
        return self._judge.call(self.hid, args, kwargs)

    def __iter__(self):
        return iter(self._judge.request({"op": "iter", "h": self.hid}))

    def __getitem__(self, key):
        return self._judge.request({"op": "getitem", "h": self.hid}, key=key)

    def __len__(self):
        return self._judge.request({"op": "len", "h": self.hid})

    def __bool__(self):
        return True

    def __repr__(self):
        return f"<your {self._cls.__name__ if self._cls else 'object'} (in the sandbox)>"


class RemoteParameter(torch.nn.Parameter):
    """A copy of one of the student's parameters; in-place operations on it write the new value back."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        target = args[0] if args else None
        if name.endswith("_") and not name.endswith("__") and isinstance(target, RemoteParameter):
            target._write_back()
            return target
        if isinstance(out, RemoteParameter) and out is not target:
            return out.as_subclass(torch.Tensor)
        return out

    def _write_back(self) -> None:
        judge, ref = self.__dict__["_judge_ref"]
        judge.request({"op": "setparam", "h": ref}, value=self.as_subclass(torch.Tensor).detach().clone())


def _check_inputs_unchanged(sent, after, where: str = "") -> None:
    """Fail the test if the kernel's view of an argument after the call differs from what the judge sent.

    The judge's own tensors never change (it sent bytes; nothing comes back into them), so expected values
    computed from them stay the test's own; a student's function that modifies its input in place is told so.
    """
    if isinstance(sent, torch.Tensor) and not isinstance(sent, RemoteParameter):
        same = (
            isinstance(after, torch.Tensor)
            and after.shape == sent.shape
            and after.dtype == sent.dtype
            and (torch.equal(after, sent) or bool(torch.isclose(after, sent, 0, 0, equal_nan=True).all()))
        )
        if not same:
            raise Verdict(f"your function modified its input{where} in place")
    elif isinstance(sent, (list, tuple)) and isinstance(after, (list, tuple)) and len(sent) == len(after):
        for i, (item, new) in enumerate(zip(sent, after)):
            _check_inputs_unchanged(item, new, where or f" (argument {i + 1})")
    elif isinstance(sent, dict) and isinstance(after, dict):
        for key, item in sent.items():
            if key in after:
                _check_inputs_unchanged(item, after[key], f" {escape(key, 40)}")


class Namespace(dict):
    """The test cells' globals: assigning a student-defined name also replaces it in the kernel."""

    def __init__(self, judge: Judge):
        super().__init__()
        self._judge = judge

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        if key in self._judge.names and self._judge.sock is not None:
            self._judge.request({"op": "setglobal", "name": key}, value=value)


def _segments(source: str) -> list[tuple[str, bool]]:
    """The cell as (code, hidden?) parts in order, each padded to its line numbers; one part if not separable."""
    lines = source.splitlines(keepends=True)
    marks = [i for i, line in enumerate(lines) if line.strip() in (HIDDEN_BEGIN, HIDDEN_END)]
    if len(marks) != 2 or lines[marks[0]].strip() != HIDDEN_BEGIN:
        return [(source, False)]
    b, e = marks
    parts = [
        ("".join(lines[:b]), False),
        ("\n" * (b + 1) + "".join(lines[b + 1 : e]), True),
        ("\n" * (e + 1) + "".join(lines[e + 1 :]), False),
    ]
    try:
        for text, _ in parts:
            compile(text, "<test>", "exec")
    except SyntaxError:
        return [(source, False)]  # markers inside a block: run whole, with the generator seeded as written
    return [p for p in parts if p[0].strip()]


class Judge:
    """Judges one notebook: holds the test namespace and talks to one kernel's agent over `listener`."""

    def __init__(self, listener: socket.socket, names: set[str], key: bytes):
        self.listener, self.names, self.key = listener, set(names), key
        self.ns = Namespace(self)
        self.sock: socket.socket | None = None
        self.deadline: float | None = None
        self._remotes: dict[int, Remote] = {}
        self._standins: list = []
        self._hidden: str | None = None  # grade_id while a hidden block runs
        self._calls = 0
        self._refused: str | None = None  # why a stand-in call was refused in this test (it fails the test)
        self._scale = _Scale()  # what this test sent to the kernel: stand-ins' arguments are sized against it
        self._seed = torch.manual_seed
        self.abandoned = False  # set by the runner when the kernel finished its turn on its own
        self.meter = None  # the sandbox's memory meter (sandbox.PeakMeter), where the runner hosts the sandbox
        self.tainted = False  # a hidden block has run: the kernel may hold hidden inputs from now on
        self.setup_failed: str | None = None  # why a locked set-up cell failed here (the grader's error)

    # --- plain data both ways ------------------------------------------------------------------------------
    def _make_remote(self, spec: dict) -> Remote:
        hid = spec["$h"]
        if hid not in self._remotes:
            self._remotes[hid] = Remote(self, hid, {"cls": spec.get("cls"), "callable": spec.get("callable")})
        return self._remotes[hid]

    def _make_param(self, tensor: torch.Tensor, ref: int) -> torch.Tensor:
        param = tensor.as_subclass(RemoteParameter)
        param.__dict__["_judge_ref"] = (self, ref)
        return param

    def _handle_of(self, obj) -> dict:
        if callable(obj):  # a trusted function handed to the student's code: calls come back here
            self._standins.append(obj)
            return {"$standin": len(self._standins) - 1}
        raise TypeError(f"the grader cannot send a {type(obj).__name__} to your code")

    def _encode(self, value, frames):
        if isinstance(value, RemoteParameter):
            value = value.as_subclass(torch.Tensor)
        return wire.encode(value, frames, self._handle_of)

    def request(self, message: dict, **values):
        frames = [b""]
        self._scale.note(list(values.values()))
        for key, value in values.items():
            message[key] = self._encode(value, frames)
        self._send(message, frames)
        return self._await_reply()[0]

    def _send(self, message: dict, frames: list[bytes]) -> None:
        if self.sock is None:
            raise KernelLost("no kernel to ask (the grader's connection is closed)")
        try:
            wire.send(self.sock, message, frames[1:])
        except OSError as exc:
            self._lost(f"the kernel stopped answering ({escape(exc, 120)})")

    def abandon(self) -> None:
        """Called from another thread: the kernel's turn is over, stop waiting for it."""
        self.abandoned = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _lost(self, why: str):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        raise KernelLost(why)

    def _callback(self, reply, frames) -> None:
        """The student's code called a stand-in: size its arguments against this test's own (`_Scale`), run the
        trusted function under its memory limit, and answer. A refused call is answered with an error (so the
        kernel is not left waiting) and fails the test: the student's fault, never the judge's."""
        fn = self._standins[reply["fn"]]
        args = wire.decode(reply.get("args", []), frames, self._make_remote, self._make_param)
        kwargs = wire.decode(reply.get("kwargs", {}), frames, self._make_remote, self._make_param)
        args = args if isinstance(args, list) else []
        kwargs = kwargs if isinstance(kwargs, dict) else {}
        why = self._scale.refuse((args, kwargs))
        if why is not None:
            self._refused = why
            refused = "the grader's stand-in refused arguments beyond the test's"
            wire.send(self.sock, {"op": "raise", "message": refused})
            raise StandInRefused(f"refused: your code asked a grader's stand-in for {why}")
        _test_hook_judge_death(args, kwargs)
        out = [b""]
        try:
            with _standin_memory(STANDIN_MEMORY):
                value = fn(*args, **kwargs)
            body = {"op": "return", "value": self._encode(value, out)}
        except Exception as exc:
            body, out = {"op": "raise", "message": f"the grader's stand-in raised {type(exc).__name__}"}, [b""]
        if self.deadline is not None and time.monotonic() > self.deadline:
            self._lost("timed out (the grader's stand-in ran past the test's time)")
        wire.send(self.sock, body, out[1:])

    def call(self, hid: int, args, kwargs):
        self._scale.note((args, kwargs))
        stack = checks._remote_stack() or []
        frames = [b""]
        ctx = {
            "grad": torch.is_grad_enabled(),
            "rng": wire.encode(torch.get_rng_state(), frames),
            "forbid": [[list(e[1]), str(e[2])] for e in stack if e[0] == "forbid"],
            "largest": any(e[0] == "largest" for e in stack),
        }
        message = {
            "op": "call",
            "h": hid,
            "ctx": ctx,
            "args": self._encode(list(args), frames),
            "kwargs": self._encode(dict(kwargs), frames),
        }
        meter = self.meter if ctx["largest"] else None
        measured = meter is not None and meter.reset()  # memory bound: the sandbox's cgroup, from outside
        self._send(message, frames)
        value, reply, frames = self._await_reply(with_frames=True)
        grown = meter.grown() if measured else None
        if grown is not None:
            for entry in stack:
                if entry[0] == "largest":
                    entry[1].record_peak(grown)
        if "inputs" in reply:  # the kernel's view of the arguments after the call: must be what was sent
            after = wire.decode(reply["inputs"], frames, self._make_remote, self._make_param)
            if isinstance(after, (list, tuple)) and len(after) == 2:
                _check_inputs_unchanged(list(args), after[0])
                _check_inputs_unchanged(dict(kwargs), after[1])
        largest = reply.get("largest")
        if isinstance(largest, list) and len(largest) == 2 and type(largest[0]) is int:
            for entry in stack:
                if entry[0] == "largest":
                    entry[1].record(largest[0], escape(largest[1], 80))
        self._calls += 1
        if self._hidden is not None:
            self._seed(self._derive("call", self._hidden, self._calls))
        return value

    def _await_reply(self, with_frames: bool = False):
        try:
            while True:
                reply, frames = wire.recv(self.sock, self.deadline)
                op = reply.get("op")
                if op == "result":
                    value = wire.decode(reply.get("value"), frames, self._make_remote, self._make_param)
                    return (value, reply, frames) if with_frames else (value, reply)
                if op == "error":
                    raise remote_error(reply.get("type", "Exception"), reply.get("message", ""))
                if op != "callback" or type(reply.get("fn")) is not int or not 0 <= reply["fn"] < len(self._standins):
                    raise wire.WireError("unexpected message from the kernel")
                self._callback(reply, frames)
        except TimeoutError:
            self._lost("timed out (no answer from your code in time)")
        except (wire.WireError, OSError) as exc:
            self._lost(f"the kernel stopped answering ({escape(exc, 120)})")

    # --- secrets ---------------------------------------------------------------------------------------------
    def _derive(self, *parts) -> int:
        digest = hmac.new(self.key, repr(parts).encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") & (2**63 - 1)

    @contextlib.contextmanager
    def _secret_seeds(self, gid: str):
        original = self._seed

        def manual_seed(seed):
            return original(self._derive("seed", gid, int(seed)))

        self._hidden = gid
        torch.manual_seed = torch.random.manual_seed = manual_seed
        original(self._derive("start", gid))
        try:
            yield
        finally:
            torch.manual_seed = torch.random.manual_seed = original
            self._hidden = None

    # --- cells -------------------------------------------------------------------------------------------------
    def run_locked(self, source: str) -> None:
        """A locked set-up cell of the source notebook (trusted): it runs here as well as in the kernel."""
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                exec(compile(source, "<set-up>", "exec"), self.ns)
        except Exception as exc:  # the grader's own cell: every later test is a grader error, not the student's
            log.warning("a set-up cell failed in the judge: %r", exc)
            self.setup_failed = self.setup_failed or f"a set-up cell failed in the judge: {escape(repr(exc), 200)}"

    def run_test(self, gid: str, source: str, timeout: float) -> dict:
        """Run one test cell against the kernel whose agent connects to `listener` within `timeout` seconds."""
        if self.setup_failed:
            return {"status": RunStatus.GRADER_ERROR, "ename": "SetupFailed", "evalue": self.setup_failed, "stdout": ""}
        self.deadline = time.monotonic() + timeout
        out = io.StringIO()
        result = {"status": RunStatus.OK}
        segment = None  # (code, hidden?, student text shown?) of the part of the cell that runs
        try:
            self.abandoned = False
            self.listener.settimeout(0.2)
            while self.sock is None:
                if self.abandoned or time.monotonic() > self.deadline:
                    raise KernelLost("your kernel did not answer the grader")
                try:
                    self.sock, _ = self.listener.accept()
                except TimeoutError:
                    continue
            self.sock.settimeout(None)
            self._scale, self._refused = _Scale(), None
            checks._REMOTE.stack = []
            found = self.request({"op": "globals", "names": sorted(self.names)})
            for name in self.names:
                if isinstance(found, dict) and name in found:
                    dict.__setitem__(self.ns, name, found[name])
                else:
                    dict.pop(self.ns, name, None)
            for code, hidden in _segments(source):
                # the student's text and the test's output are shown only while the kernel has seen public
                # inputs alone: once a hidden block started, the student's code may hold hidden inputs and
                # carry them out in any later message, value or output (even of a visible test)
                shows_hidden = hidden or HIDDEN_BEGIN in code  # markers not separable: all of it is hidden
                segment = (code, shows_hidden, not shows_hidden and not self.tainted)
                if shows_hidden:
                    self.tainted = True
                compiled = compile(code, f"<test {gid}>", "exec")
                seg_out = io.StringIO()
                try:  # warnings are written to stderr: shown or withheld with the rest
                    with contextlib.redirect_stdout(seg_out), contextlib.redirect_stderr(seg_out):
                        if hidden:
                            with self._secret_seeds(gid):
                                exec(compiled, self.ns)
                        else:
                            exec(compiled, self.ns)
                finally:
                    if segment[2]:
                        out.write(seg_out.getvalue())
                    elif seg_out.getvalue() and WITHHELD_OUTPUT not in out.getvalue():
                        out.write(WITHHELD_OUTPUT)
            if self._refused:  # even if the test's own code caught it: a refused stand-in call fails the test
                raise StandInRefused(REFUSED)
        except KernelLost as exc:
            result = {
                "status": RunStatus.TIMEOUT if "timed out" in str(exc) else RunStatus.ERROR,
                "ename": "KernelLost",
                "evalue": str(exc),
            }
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if self._refused and not isinstance(exc, StandInRefused):  # what followed a refusal is not the cause
                exc = StandInRefused(REFUSED)
            if isinstance(exc, StandInRefused):  # fixed text: the sizes asked for are the student's choice
                result = {"status": RunStatus.ERROR, "ename": "StandInRefused", "evalue": REFUSED}
            elif segment is None and self.tainted or segment is not None and not segment[2]:
                result = _trusted_failure(exc, gid, *(segment[:2] if segment else ("", False)))
            else:  # a visible test before any hidden input reached the kernel: the message may be the student's
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                result = {"status": RunStatus.ERROR, "ename": _ename(exc), "evalue": escape(message, 500)}
        finally:
            checks._REMOTE.stack = None
            if self.sock is not None:
                try:
                    wire.send(self.sock, {"op": "end"})
                except OSError:
                    pass
                self.sock.close()
                self.sock = None
        text = out.getvalue()
        result["stdout"] = text if len(text) <= MAX_TEST_OUTPUT else text[:MAX_TEST_OUTPUT] + "\n[truncated]\n"
        return result
