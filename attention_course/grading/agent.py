"""The sandbox side of the judge: runs inside the student's kernel, answers the judge's requests with plain data.

While a test cell is judged, the grader sends the kernel one line, `serve(path)`, and nothing else of the test:
the kernel connects to the judge's unix socket and answers requests (look up a name, read an attribute, call a
function or a module, iterate, index, replace a global with a judge-provided stand-in, write a parameter) until
the judge says `end`. Objects stay here, behind numeric handles; only tensors (as bytes), numbers, strings and
containers of them go back (`wire.py`).

Nothing here is trusted: the student's code shares this process and may replace any of it. The judge believes
none of what it is told beyond its plain values, which it checks itself. Two checks must watch the student's
call from inside and therefore run here (documented in the grading README's threat model): forbidden built-ins
(`checks.forbid`) and the largest intermediate tensor (`checks.LargestIntermediate`).
"""

from __future__ import annotations

import contextlib
import socket
import sys

import torch

from attention_course import checks
from attention_course.grading import wire

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
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.set_grad_enabled(bool(ctx.get("grad", True))))
        for names, who in ctx.get("forbid", []):
            stack.enter_context(checks.forbid(tuple(names), str(who)))
        if ctx.get("largest"):
            largest = stack.enter_context(checks.LargestIntermediate())
        out = target(*args, **kwargs)
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
