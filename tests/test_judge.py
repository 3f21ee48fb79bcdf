"""The judge and its wire format, without a sandbox (fast; no root or bubblewrap needed).

A plain subprocess stands in for the student's kernel: it runs the student's cells and, for each test cell,
the one line the grader sends (`agent.serve(path)`); the judge runs the test cell's source here. The sandboxed
version of the same path is tests/test_grading.py and tests/test_grading_submissions.py.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from helpers import ASSIGNMENTS, ROOT

from attention_course import notebooks as nbt
from attention_course.grading import assemble, wire
from attention_course.grading.judge import Judge, escape

KERNEL = textwrap.dedent("""
    import contextlib, io, json, sys
    sys.path.insert(0, sys.argv[1])
    ns = {"__name__": "__main__"}
    out = sys.stdout
    for line in sys.stdin:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(json.loads(line), "<cell>", "exec"), ns)
        except BaseException as exc:
            pass
        print("done", file=out, flush=True)
""")


class PlainKernel:
    """A subprocess that executes cells sent to it, one JSON line each."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", KERNEL, str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def start(self, code: str) -> None:
        self.proc.stdin.write(json.dumps(code) + "\n")
        self.proc.stdin.flush()

    def wait(self) -> None:
        assert self.proc.stdout.readline().strip() == "done"

    def run(self, code: str) -> None:
        self.start(code)
        self.wait()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def judge_notebook(nb, tmp_path, key: bytes = b"k" * 32, source=None) -> dict[str, dict]:
    """grade_id -> the judge's result, for a notebook whose cells carry nbgrader metadata."""
    source = source or nb
    path = str(tmp_path / "j.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    judge = Judge(listener, assemble.student_names(source), key)
    kernel = PlainKernel()
    results = {}
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            meta = nbt.nbgrader_meta(cell)
            if meta.get("grade"):
                kernel.start(f"__import__('attention_course.grading.agent', fromlist=['serve']).serve({path!r})")
                results[meta["grade_id"]] = judge.run_test(meta["grade_id"], cell.source, 60)
                kernel.wait()
            else:
                if meta.get("locked"):
                    judge.run_locked(cell.source)
                kernel.run(cell.source)
    finally:
        kernel.close()
        listener.close()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_passes_and_blank_fails_every_test_in_the_judge(assignment, tmp_path):
    source = nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    results = judge_notebook(source, tmp_path)
    assert set(results) == set(nbt.test_cells(source))
    assert all(r["status"] == "ok" for r in results.values()), results
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    blank = nbt.with_answers(release, {})
    for cell in blank.cells:  # the test cells as the source has them (the grader restores them so)
        gid = nbt.nbgrader_meta(cell).get("grade_id")
        if gid in nbt.test_cells(source):
            cell.source = nbt.test_cells(source)[gid].source
    (tmp_path / "blank").mkdir()
    failed = judge_notebook(blank, tmp_path / "blank", source=source)
    assert all(r["status"] == "error" for r in failed.values()), failed


def test_hidden_inputs_come_from_the_key(tmp_path):
    """Inside a hidden block, `torch.manual_seed(s)` seeds from the judge's key: the same key draws the same
    inputs, another key others; the visible part keeps the seeds as written."""
    source = (
        "torch.manual_seed(0)\nvisible = torch.randn(4)\n### BEGIN HIDDEN TESTS\ntorch.manual_seed(0)\n"
        "hidden = torch.randn(4)\n### END HIDDEN TESTS\n"
    )
    draws = []
    for key in (b"a" * 32, b"b" * 32, b"a" * 32):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(tmp_path / f"s{len(draws)}"))
        listener.listen(1)
        judge = Judge(listener, set(), key)
        judge.ns["torch"] = torch
        threading.Thread(target=_fake_agent, args=(str(tmp_path / f"s{len(draws)}"),), daemon=True).start()
        assert judge.run_test("t", source, 30)["status"] == "ok"
        draws.append((judge.ns["visible"], judge.ns["hidden"]))
        listener.close()
    torch.manual_seed(0)
    plain = torch.randn(4)
    assert all(torch.equal(v, plain) for v, _ in draws)
    assert torch.equal(draws[0][1], draws[2][1]) and not torch.equal(draws[0][1], draws[1][1])
    assert not torch.equal(draws[0][1], plain)


def _fake_agent(path: str, answer=None) -> None:
    """An agent that answers `globals` with nothing, or every request with `answer` (raw bytes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    try:
        while True:
            message, _ = wire.recv(sock)
            if message.get("op") == "end":
                return
            if answer is not None:
                sock.sendall(answer)
            else:
                wire.send(sock, {"op": "result", "value": {"$dict": []}})
    except (wire.WireError, OSError):
        return
    finally:
        sock.close()


def _frames(*parts: bytes) -> bytes:
    return struct.pack("!I", len(parts)) + b"".join(struct.pack("!Q", len(p)) + p for p in parts)


LIES = {
    "not json": _frames(b"\x80\x04pickle"),
    "a pickle tag": _frames(json.dumps({"op": "result", "value": {"$pickle": "gASVAAAA"}}).encode()),
    "bytes that do not match the shape": _frames(
        json.dumps({"op": "result", "value": {"$t": 1, "dtype": "float32", "shape": [1000]}}).encode(), b"1234"
    ),
    "an object dtype": _frames(
        json.dumps({"op": "result", "value": {"$t": 1, "dtype": "object", "shape": [1]}}).encode(), b"12345678"
    ),
    "a huge frame": struct.pack("!I", 1) + struct.pack("!Q", 2**40),
    "a status instead of a result": _frames(json.dumps({"op": "ok", "status": "passed"}).encode()),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_lying_kernel_fails_closed(lie, tmp_path):
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    judge = Judge(listener, {"softmax"}, b"k" * 32)
    threading.Thread(target=_fake_agent, args=(path, LIES[lie]), daemon=True).start()
    result = judge.run_test("t", "assert True\n", 10)
    assert result["status"] != "ok", result
    listener.close()


def test_a_silent_kernel_fails_closed(tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s"))
    listener.listen(1)
    result = Judge(listener, {"softmax"}, b"k" * 32).run_test("t", "assert True\n", 1)
    assert result["status"] != "ok" and "did not answer" in result["evalue"]


def test_wire_round_trip_and_refusals():
    value = {
        "a": (torch.arange(6.0).reshape(2, 3), [1, 2.5, None, True, "s", float("nan")]),
        "b": torch.tensor([True, False]),
        "c": torch.zeros(0, 3),
        "d": torch.tensor(3, dtype=torch.int64),
        "e": torch.ones(2, dtype=torch.bfloat16),
    }
    frames = [b""]
    encoded = wire.encode(value, frames)
    back = wire.decode(json.loads(json.dumps(encoded)), frames)
    for key in ("b", "c", "d", "e"):
        assert torch.equal(back[key], value[key]) and back[key].dtype == value[key].dtype
    assert torch.equal(back["a"][0], value["a"][0]) and back["a"][1][:5] == [1, 2.5, None, True, "s"]
    assert type(back["a"]) is tuple
    with pytest.raises(wire.WireError):
        wire.encode(object(), [b""])  # the judge sends no objects but handles and stand-ins
    with pytest.raises(wire.WireError):
        wire.decode({"$h": 1}, [b""])  # a handle is refused where none is expected
    with pytest.raises(wire.WireError):
        wire.decode({"$t": 1, "dtype": "float32", "shape": [2], "extra": 1, "more": 2, "x": 3, "y": 4}, [b"", b""])


def test_escape_keeps_one_printable_line():
    assert escape("a\nb\x1b[31m\u202e=cmd") == "a b?[31m?=cmd"
    assert len(escape("x" * 1000, 50)) == 50


IN_PLACE = [
    (a, s)
    for a in ASSIGNMENTS
    for s in __import__("helpers").students_for(a)
    if any(word in s for word in ("in_place", "modifies", "inplace"))
]


@pytest.mark.slow
@pytest.mark.parametrize("assignment,student", IN_PLACE, ids=[f"{a}/{s}" for a, s in IN_PLACE])
def test_in_place_changes_to_inputs_are_seen_by_the_judge(assignment, student, tmp_path):
    """A function that modifies its input in place fails the call in the judge (the kernel sends the arguments
    back after each call; the judge compares them with what it sent and keeps its own tensors), so it loses the
    points it loses in-kernel, where the tests compare the inputs with their copies after each call."""
    from helpers import students_for

    source = nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    answers, losing = students_for(assignment)[student]
    results = judge_notebook(nbt.with_answers(source, answers), tmp_path, source=source)
    assert {gid for gid, r in results.items() if r["status"] != "ok"} == losing
