"""The trusted side sizes what the kernel asks of it (fast; no sandbox): replies are bounded in frames, bytes,
header size, tokens and nesting before anything is read into memory or parsed, and a grader's stand-in refuses
arguments beyond the test's own sizes (the test fails; the judge goes on). See the grading README's threat model.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest
import torch
from test_judge import PlainKernel, _fake_agent, _frames

from attention_course.grading import wire
from attention_course.grading.judge import STANDIN_FLOOR_NUMBER, Judge

LIES = {
    # sizes declared in the frame headers: refused from the 4- and 8-byte prefixes, before any byte is read
    "too many frames": struct.pack("!I", wire.MAX_FRAMES + 1),
    "frames that add up to more than the limit": struct.pack("!I", 3)
    + struct.pack("!Q", 10)
    + b'{"op":"x"}'
    + struct.pack("!Q", wire.MAX_BYTES - 5)
    + b"",
    "a header larger than its limit": struct.pack("!I", 1) + struct.pack("!Q", wire.MAX_HEAD + 1),
    # a header within its size but beyond its counts: refused before json.loads
    "a deeply nested header": _frames(b'{"op":"result","value":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "a header of too many items": _frames(b'{"op":"result","value":[' + b"0," * (wire.MAX_TOKENS) + b"0]}"),
    "a header of too many strings": _frames(b'{"op":"result","value":[' + b'"",' * (wire.MAX_TOKENS) + b'""]}'),
    # tensor headers checked against the bytes that came
    "a tensor larger than its bytes": _frames(
        json.dumps({"op": "result", "value": {"$t": 1, "dtype": "float64", "shape": [2**20, 2**20]}}).encode(),
        b"12345678",
    ),
    "an empty tensor of an absurd shape": _frames(
        json.dumps({"op": "result", "value": {"$t": 1, "dtype": "float32", "shape": [0, 2**62, 2**62]}}).encode(),
        b"",
    ),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_lying_kernel_is_refused_before_parsing(lie, tmp_path):
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    judge = Judge(listener, {"softmax"}, b"k" * 32)
    threading.Thread(target=_fake_agent, args=(path, LIES[lie]), daemon=True).start()
    started = time.monotonic()
    result = judge.run_test("t", "softmax\n", 20)
    listener.close()
    assert result["status"] == "error" and result["ename"] == "KernelLost", result
    assert "stopped answering" in result["evalue"], result  # refused as garbage, not waited for (a timeout)
    assert time.monotonic() - started < 10


def test_header_checks_count_before_parsing():
    wire.check_header(b'{"op":"result","value":' + b"[" * 30 + b"]" * 30 + b"}")
    wire.check_header(json.dumps({"s": "[[[[" * 1000, "q": '\\"[[' * 100}).encode())  # brackets in strings
    for bad in (
        b"[" * (wire.MAX_DEPTH + 2) + b"]" * (wire.MAX_DEPTH + 2),
        b"[" + b"1," * wire.MAX_TOKENS + b"1]",
        b" " * (wire.MAX_HEAD + 1),
    ):
        with pytest.raises(wire.WireError):
            wire.check_header(bad)


def test_an_honest_message_of_the_largest_kind_still_goes_through(tmp_path):
    a, b = socket.socketpair()
    frames = [b""]
    value = {"x": torch.randn(512, 1024), "items": list(range(10_000)), "deep": [[[[[[1]]]]]]}
    body = {"op": "result", "value": wire.encode(value, frames)}
    threading.Thread(target=wire.send, args=(a, body, frames[1:]), daemon=True).start()
    message, got = wire.recv(b, time.monotonic() + 30)
    back = wire.decode(message["value"], got)
    assert torch.equal(back["x"], value["x"]) and back["items"] == value["items"]
    a.close()
    b.close()


STUDENT = """
import torch
def f(n, width=1):
    return torch.zeros(n, width)
def g(n):
    return f(n)                        # whatever `f` is now: the grader's stand-in during the test
def greedy(n):
    try:
        return f(10**9, 10**9)         # far beyond anything the test sent
    except RuntimeError:
        return f(n)                    # and carries on as if nothing happened
def wide(n):
    return f(n, n * 10**6)
def h(x):
    return torch.zeros(x.shape[-1])
def hollow(n):
    return h(torch.empty(0, 10**6))    # no element, yet a size far beyond the test's (a mask of 10**6 columns)
def held(n):
    return h(torch.empty(2, n))        # sizes of the test's own scale
"""

TRUSTED = "def trusted(n, width=1):\n    return torch.ones(n, width)\nf = trusted\n"
TRUSTED_H = "def trusted_h(x):\n    return torch.ones(x.shape[-1])\nh = trusted_h\n"


def _judge_cells(tmp_path, tests: dict[str, str]) -> dict[str, dict]:
    path = str(tmp_path / "j.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    judge = Judge(listener, {"f", "g", "greedy", "wide", "h", "hollow", "held"}, b"k" * 32)
    judge.ns["torch"] = torch
    kernel = PlainKernel()
    results = {}
    try:
        kernel.run(STUDENT)
        for gid, source in tests.items():
            kernel.start(f"__import__('attention_course.grading.agent', fromlist=['serve']).serve({path!r})")
            results[gid] = judge.run_test(gid, source, 60)
            kernel.wait()
    finally:
        kernel.close()
        listener.close()
    return results


def test_a_stand_in_refuses_arguments_beyond_the_tests_own(tmp_path):
    results = _judge_cells(
        tmp_path,
        {
            "honest": TRUSTED + "assert g(50).sum() == 50\nassert g(3000).shape == (3000, 1)\n",
            "greedy": TRUSTED + "assert greedy(50).sum() == 50\n",
            "wide": TRUSTED + "assert wide(7).shape[0] == 7\n",
            "hollow": TRUSTED_H + "assert hollow(3).shape[0] > 0\n",
            "held": TRUSTED_H + "assert held(300).sum() == 300\n",
            "after": TRUSTED + "assert g(20).sum() == 20\n",  # the judge is unharmed: the next test passes
        },
    )
    assert results["honest"]["status"] == "ok", results["honest"]
    assert results["held"]["status"] == "ok", results["held"]
    assert results["after"]["status"] == "ok", results["after"]
    for gid in ("greedy", "wide", "hollow"):
        assert results[gid]["status"] == "error", results[gid]
        assert results[gid]["ename"] == "StandInRefused" and "refused" in results[gid]["evalue"], results[gid]


def test_the_tests_own_sizes_raise_the_bound(tmp_path):
    """A test that itself sends larger numbers lets the stand-in take numbers of that scale (and no more)."""
    big = 3 * STANDIN_FLOOR_NUMBER
    results = _judge_cells(
        tmp_path,
        {
            "scaled": TRUSTED + f"assert g({big}).shape == ({big}, 1)\n",
            "beyond": TRUSTED + f"assert g({STANDIN_FLOOR_NUMBER + 1}).shape[0] > 0\n",
        },
    )
    assert results["scaled"]["status"] == "ok", results["scaled"]
    assert results["beyond"]["status"] == "ok", results["beyond"]  # the test sent that number itself
