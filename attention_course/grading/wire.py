"""Plain data between the trusted judge and the sandboxed kernel: JSON plus raw tensor bytes, never pickle.

A message is a list of frames on a unix socket: frame 0 is UTF-8 JSON, every other frame is the raw bytes of one
tensor, referred to from the JSON as `{"$t": index, "dtype": "float32", "shape": [2, 3]}`. Other values:
numbers, strings, booleans, None and lists as JSON; `{"$tuple": [...]}`, `{"$dict": [[key, value], ...]}`
(string keys), `{"$h": id, ...}` a handle on an object that stays in the kernel (a module, a function).

The decoder (used by the judge on everything the kernel sends) accepts nothing else: unknown tags, dtypes
outside `DTYPES`, shapes that do not match the byte count are refused with `WireError`. A message is sized
before anything in it is allocated or parsed (`recv`): at most `MAX_FRAMES` frames and `MAX_BYTES` bytes in all
(each frame's declared size is checked against what is left before it is read), a JSON header of at most
`MAX_HEAD` bytes whose nesting depth (`MAX_DEPTH`) and number of tokens (`MAX_TOKENS`) are counted on the raw
text before `json.loads` runs; `decode` then counts the values it builds (`MAX_ITEMS`). Tensors are rebuilt
from bytes as plain `torch.Tensor`s, so a tensor subclass or an object with a lying `__eq__` in the kernel
arrives as numbers and nothing else.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import socket
import struct
import time

import torch

DTYPES = {
    name: getattr(torch, name)
    for name in (
        "float32",
        "float64",
        "float16",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
        "complex64",
        "complex128",
    )
}
MAX_FRAMES = 4096
MAX_BYTES = 256 * 2**20  # one message in all (the largest tensor a test exchanges is a few MB)
MAX_HEAD = 4 * 2**20  # its JSON header
MAX_DEPTH = 32
MAX_ITEMS = 100_000  # values `decode` builds from one message
MAX_TOKENS = 4 * MAX_ITEMS  # strings, separators and brackets of the header, counted before parsing
MAX_DIM = 2**40  # one dimension of a tensor header
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_TOKEN = re.compile(rb"[\[\]{},:]")


class WireError(Exception):
    """A message that is not plain data of the agreed shape (or a broken, closed or silent peer)."""


class Handle:
    """What the encoder writes for an object it cannot send as data; subclasses attach behaviour."""

    def __init__(self, hid: int, info: dict):
        self.hid, self.info = hid, info


def encode(value, frames: list[bytes], handle_of=None, ref_of=None, depth: int = 0):
    """The JSON form of `value`, appending tensor bytes to `frames`. `handle_of(obj) -> dict` is called for any
    other object (the agent registers it and returns `{"$h": id, ...}`); without it such objects are an error.
    `ref_of(parameter) -> id` registers a parameter so that the judge can write into it."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and type(value) in (int, bool):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"$f": repr(value)}
    if isinstance(value, torch.Tensor):
        spec = _tensor(value, frames)
        if ref_of is not None and isinstance(value, torch.nn.Parameter):
            spec["ref"] = ref_of(value)  # a parameter: the judge may write into it (copy_ under no_grad)
        return spec
    if type(value) is tuple:
        return {"$tuple": [encode(v, frames, handle_of, ref_of, depth + 1) for v in value]}
    if type(value) is list:
        return [encode(v, frames, handle_of, ref_of, depth + 1) for v in value]
    if type(value) is dict and all(type(k) is str for k in value):
        return {"$dict": [[k, encode(v, frames, handle_of, ref_of, depth + 1)] for k, v in value.items()]}
    if isinstance(value, Handle):
        return {"$h": value.hid}
    if handle_of is None:
        raise WireError(f"cannot send a {type(value).__name__} as plain data")
    return handle_of(value)


def _tensor(t: torch.Tensor, frames: list[bytes]) -> dict:
    plain = torch.Tensor.as_subclass(t, torch.Tensor).detach().cpu().contiguous()
    name = str(plain.dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise WireError(f"tensors of dtype {name} are not sent")
    frames.append(plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b"")
    return {"$t": len(frames) - 1, "dtype": name, "shape": list(plain.shape)}


def decode(value, frames: list[bytes], make_handle=None, make_ref=None, depth: int = 0, budget: list | None = None):
    """The value that `encode` wrote, checked: plain Python data and plain tensors only (`make_ref(tensor, id)`
    wraps a parameter the judge may write into; `make_handle(spec)` builds a handle)."""
    budget = budget if budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise WireError("message too large or nested too deeply")
    if value is None or type(value) in (bool, str, int, float):
        return value
    if type(value) is list:
        return [decode(v, frames, make_handle, make_ref, depth + 1, budget) for v in value]
    if type(value) is not dict or not 1 <= len(value) <= 6:
        raise WireError("unexpected value in message")
    if "$t" in value:
        tensor = _untensor(value, frames)
        ref = value.get("ref")
        return make_ref(tensor, ref) if make_ref is not None and type(ref) is int else tensor
    if set(value) == {"$tuple"} and type(value["$tuple"]) is list:
        return tuple(decode(v, frames, make_handle, make_ref, depth + 1, budget) for v in value["$tuple"])
    if set(value) == {"$dict"} and type(value["$dict"]) is list:
        out = {}
        for pair in value["$dict"]:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                raise WireError("bad dict entry")
            out[pair[0]] = decode(pair[1], frames, make_handle, make_ref, depth + 1, budget)
        return out
    if set(value) == {"$f"} and value["$f"] in ("nan", "inf", "-inf"):
        return float(value["$f"])
    if "$h" in value and make_handle is not None and type(value["$h"]) is int:
        return make_handle(value)
    raise WireError("unexpected value in message")


def _untensor(spec: dict, frames: list[bytes]) -> torch.Tensor:
    index, dtype, shape = spec.get("$t"), spec.get("dtype"), spec.get("shape")
    if (
        set(spec) - {"$t", "dtype", "shape", "ref"}
        or type(index) is not int
        or not 0 < index < len(frames)
        or dtype not in DTYPES
        or type(shape) is not list
        or len(shape) > 16
        or not all(type(s) is int and 0 <= s <= MAX_DIM for s in shape)
    ):
        raise WireError("bad tensor header")
    dt = DTYPES[dtype]
    numel = math.prod(shape)
    raw = frames[index]
    if len(raw) != numel * torch.empty((), dtype=dt).element_size():
        raise WireError("tensor bytes do not match its shape")
    if numel == 0:
        return torch.empty(shape, dtype=dt)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dt).reshape(shape)  # the one copy it owns


# --- frames on a socket ------------------------------------------------------------------------------------


def send(sock: socket.socket, message: dict, frames: list[bytes] | None = None) -> None:
    head = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
    parts = [head, *(frames or [])]
    sock.sendall(struct.pack("!I", len(parts)) + b"".join(struct.pack("!Q", len(p)) + p for p in parts))


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except TimeoutError:
            raise TimeoutError("no answer in time") from None
        if not chunk:
            raise WireError("the other side closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def check_header(head: bytes) -> None:
    """Size a JSON header before parsing it: bytes, tokens (strings, separators, brackets) and nesting depth are
    counted on the raw text (strings blanked first), so no parser runs on a header beyond the limits."""
    if len(head) > MAX_HEAD:
        raise WireError("message header too large")
    strings = len(_STRING.findall(head))
    if strings > MAX_TOKENS:
        raise WireError("too many items in message")
    tokens = _TOKEN.findall(_STRING.sub(b'""', head))
    if strings + len(tokens) > MAX_TOKENS:
        raise WireError("too many items in message")
    steps = (1 if t in (b"[", b"{") else -1 for t in tokens if t not in (b",", b":"))
    if max(itertools.accumulate(steps, initial=0)) > MAX_DEPTH + 1:
        raise WireError("message nested too deeply")


def recv(sock: socket.socket, deadline: float | None = None) -> tuple[dict, list[bytes]]:
    """One message: (JSON object, frames), frame 0 being the JSON itself. Everything is sized before it is read
    or parsed: the frame count, each frame's declared size against the bytes left (`MAX_BYTES` in all, `MAX_HEAD`
    for the header), then the header's tokens and depth (`check_header`)."""
    (count,) = struct.unpack("!I", _recv_exact(sock, 4, deadline))
    if not 1 <= count <= MAX_FRAMES:
        raise WireError("bad frame count")
    frames, total = [], 0
    for i in range(count):
        (size,) = struct.unpack("!Q", _recv_exact(sock, 8, deadline))
        total += size
        if total > MAX_BYTES:
            raise WireError("message too large")
        if i == 0 and size > MAX_HEAD:
            raise WireError("message header too large")
        frames.append(_recv_exact(sock, size, deadline))
    check_header(frames[0])
    try:
        message = json.loads(frames[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WireError("message is not JSON (or nested too deeply)") from None
    if type(message) is not dict:
        raise WireError("message is not a JSON object")
    return message, frames
