"""The sandbox side of the judge: runs inside the student's kernel, answers the judge's requests with plain data.

While a test cell is judged, the grader sends the kernel one line, `serve(path)`, and nothing else of the test:
the kernel connects to the judge's unix socket and answers requests (look up a name, read an attribute, call a
function or a module, iterate, index, replace a global with a judge-provided stand-in, write a parameter) until
the judge says `end`. Objects stay here, behind numeric handles; only tensors (as bytes), numbers, strings and
containers of them go back (`wire.py`).

Nothing here is trusted: the student's code shares this process and may replace any of it. The judge believes
none of what it is told beyond its plain values, which it checks itself. Two checks must watch the student's
call from inside and therefore run here (documented in the grading README's threat model): forbidden built-ins
(`checks.forbid`) and the largest intermediate tensor (`checks.LargestIntermediate`; the memory bound itself is
measured from outside, from the sandbox's cgroup). The kernel imports this module at start-up, before any cell
of the student (`Sandbox.kernel_argv`), so the references below are taken before the student's code runs: a
student who later rebinds `checks.forbid` changes nothing here, and one who changes the check machinery
itself (the classes, torch's mode and library entry points) is caught by `_intact` before and after each checked
call, which then fails. What the student's code could still do in its own process is flagged by the static scan.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import sys
import warnings

import torch

from attention_course import checks
from attention_course.grading import wire

_forbid = checks.forbid
_Largest = checks.LargestIntermediate
_ForbiddenCall = checks.ForbiddenCall


def _watched() -> list[tuple[object, str]]:
    """The attributes the in-kernel checks depend on: the course's check module and torch's mode, dispatch and
    library entry points."""
    from torch import overrides
    from torch.utils import _python_dispatch

    owners = {
        checks: [
            "forbid",
            "_forbidden",
            "_process_wide",
            "_on_top",
            "_raiser",
            "_remote_stack",
            "_name",
            "_ForbidFunctions",
            "_ForbidOperators",
            "LargestIntermediate",
            "ForbiddenCall",
            "_REMOTE",
        ],
        checks._ForbidFunctions: ["__torch_function__", "__init__"],
        checks._ForbidOperators: ["__torch_dispatch__", "__init__"],
        checks.LargestIntermediate: ["__torch_dispatch__", "__enter__", "__exit__", "record", "__init__"],
        overrides.TorchFunctionMode: ["__enter__", "__exit__", "push"],
        _python_dispatch.TorchDispatchMode: ["__enter__", "__exit__", "push"],
        overrides: ["_get_current_function_mode_stack", "TorchFunctionMode", "_pop_mode_temporarily"],
        _python_dispatch: ["_get_current_dispatch_mode_stack", "_pop_mode", "_push_mode", "TorchDispatchMode"],
        torch.library.Library: ["__init__", "impl", "_destroy"],
        torch.library: ["Library"],
        torch._C: [
            "_push_on_torch_function_stack",
            "_pop_torch_function_stack",
            "_get_function_stack_at",
            "_len_torch_function_stack",
            "_set_torch_function_mode",
            "_DisableTorchDispatch",
            "DisableTorchFunction",
            "DisableTorchFunctionSubclass",
        ],
        torch: ["library", "ops", "overrides"],
        warnings: ["catch_warnings", "simplefilter"],
        sys.modules[__name__]: ["_forbid", "_Largest", "_ForbiddenCall", "_intact", "_snapshot", "_call", "_handle"],
    }
    return [(owner, name) for owner, names in owners.items() for name in names if hasattr(owner, name)]


def _snapshot() -> list[tuple[object, object]]:
    values = [inspect.getattr_static(owner, name, None) for owner, name in _WATCHED]
    return [(value, getattr(value, "__code__", None)) for value in values]


def _intact() -> list[str]:
    """The watched attributes that are no longer what they were when this module was imported (empty: intact)."""
    return [
        f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
        for (owner, name), (value, code), (was, was_code) in zip(_WATCHED, _snapshot(), _SNAPSHOT)
        if value is not was or code is not was_code
    ]


_objects: dict[int, object] = {}
_ids: dict[int, int] = {}
_conn: socket.socket | None = None
MAX_LISTED = 10_000


def _torch_class(obj) -> str:
    """The most derived class of `obj` that PyTorch itself defines (for the judge's isinstance checks)."""
    for klass in type(obj).__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module == "torch" or module.startswith("torch."):
            return f"{module}:{klass.__qualname__}"
    return ""


def _handle_of(obj) -> dict:
    key = id(obj)
    if key not in _ids or _objects.get(_ids[key]) is not obj:
        hid = len(_objects) + 1
        _objects[hid], _ids[key] = obj, hid
    return {"$h": _ids[key], "cls": _torch_class(obj), "callable": callable(obj)}


def _ref_of(param) -> int:
    return _handle_of(param)["$h"]


def _object(spec: dict):
    if spec.get("$standin") is not None:
        return _stand_in(int(spec["$standin"]))
    return _objects[spec["$h"]]


def _decode(value, frames):
    if isinstance(value, dict) and "$standin" in value:
        return _stand_in(int(value["$standin"]))
    return wire.decode(value, frames, make_handle=_object)


def _reply(sock, value, extra=None) -> None:
    frames = [b""]
    extra = dict(extra or {})
    if "inputs" in extra:
        extra["inputs"] = wire.encode(extra["inputs"], frames, _handle_of, _ref_of)
    body = {"op": "result", "value": wire.encode(value, frames, _handle_of, _ref_of), **extra}
    wire.send(sock, body, frames[1:])


def _error(sock, exc: BaseException) -> None:
    wire.send(sock, {"op": "error", "type": type(exc).__name__, "message": str(exc)[:2000]})


def _stand_in(fid: int):
    """A global the judge replaced for this test (e.g. a trusted `masked_softmax`): calls go back to the judge."""

    def stand_in(*args, **kwargs):
        sock = _conn
        if sock is None:
            raise RuntimeError("the grader's stand-in is only available while a test runs")
        frames = [b""]
        body = {
            "op": "callback",
            "fn": fid,
            "args": wire.encode(list(args), frames, _handle_of, _ref_of),
            "kwargs": wire.encode(dict(kwargs), frames, _handle_of, _ref_of),
        }
        wire.send(sock, body, frames[1:])
        message, frames = wire.recv(sock)
        if message.get("op") == "return":
            return wire.decode(message.get("value"), frames, make_handle=_object)
        raise RuntimeError(str(message.get("message", "the grader's stand-in failed")))

    stand_in.__name__ = f"grader_stand_in_{fid}"
    return stand_in


def _call(message, frames):
    target = _objects[message["h"]]
    args = _decode(message.get("args", []), frames)
    kwargs = _decode(message.get("kwargs", {}), frames)
    ctx = message.get("ctx", {})
    rng = ctx.get("rng")
    if isinstance(rng, dict):
        torch.set_rng_state(wire.decode(rng, frames))
    largest = None
    checked = bool(ctx.get("forbid")) or bool(ctx.get("largest"))
    if checked and (changed := _intact()):
        raise _ForbiddenCall(f"the grader's checks were changed in your kernel ({', '.join(changed[:3])})")
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.set_grad_enabled(bool(ctx.get("grad", True))))
        for names, who in ctx.get("forbid", []):
            stack.enter_context(_forbid(tuple(str(n) for n in names), str(who)))
        if ctx.get("largest"):
            largest = stack.enter_context(_Largest())
        out = target(*args, **kwargs)
        if checked and (changed := _intact()):  # changed during the call (and perhaps put back before the end)
            raise _ForbiddenCall(f"your code changed the grader's checks ({', '.join(changed[:3])})")
    extra = {"largest": [int(largest.numel), str(largest.op)]} if largest is not None else {}
    extra["inputs"] = (args, kwargs)  # as they are after the call: the judge sees in-place changes
    return out, extra


def _handle(message, frames, namespace):
    op = message.get("op")
    if op == "globals":
        found = {name: namespace[name] for name in message.get("names", []) if name in namespace}
        return found, None
    if op == "call":
        return _call(message, frames)
    target = _objects.get(message.get("h"))
    if op == "getattr":
        return getattr(target, str(message["name"])), None
    if op == "iter":
        items = []
        for item in target:
            items.append(item)
            if len(items) >= MAX_LISTED:
                break
        return items, None
    if op == "getitem":
        return target[_decode(message.get("key"), frames)], None
    if op == "len":
        return len(target), None
    if op == "setglobal":
        namespace[str(message["name"])] = _decode(message.get("value"), frames)
        return None, None
    if op == "setparam":
        with torch.no_grad():
            target.copy_(_decode(message.get("value"), frames))
        return None, None
    raise ValueError(f"unknown request {op!r}")


def serve(path: str) -> None:
    """Answer the judge's requests for one test cell, then return (the judge closes or says `end`)."""
    global _conn
    namespace = sys._getframe(1).f_globals
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    _conn = sock
    try:
        while True:
            try:
                message, frames = wire.recv(sock)
            except (wire.WireError, OSError):
                return
            if message.get("op") == "end":
                return
            try:
                value, extra = _handle(message, frames, namespace)
                _reply(sock, value, extra)
            except Exception as exc:
                _error(sock, exc)
    except (wire.WireError, OSError):
        return
    finally:
        _conn = None
        sock.close()


# taken last, when this module is complete (it is imported when the kernel starts, before any cell of the student)
_WATCHED = _watched()
_SNAPSHOT = _snapshot()  # the objects themselves (kept alive here), compared by identity
