"""`make grade` on a Dask cluster: a real `dask scheduler` and `dask worker`s on 127.0.0.1 (never another address).

One small class of attention-pooling (a correct student, a wrong one, a hostile one that dumps everything its
kernel can see, one whose kernel dies) is graded on this machine and through the cluster: the gradebook and
grades.csv must be identical. Then a worker is SIGKILLed half-way (nothing lost, same scores), a TLS cluster
(throwaway CA, require_encryption) grades too, and no hidden-test text reaches a worker: the source's hidden
block gets a marker line, and each worker writes what it received (GRADING_DASK_RECEIVED_DIR) for the test
to search.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from helpers import ROOT, VENV_BIN, copy_course, gradebook_scores

from attention_course import notebooks as nbt
from attention_course.grading.sandbox import available

SANDBOX = available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}"),
]
distributed = pytest.importorskip("distributed")

ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"
MARKER = "HIDDEN-MARKER-9c41e7"
DASK = str(VENV_BIN / "dask")
CRASH = "\nimport os\nos._exit(0)\n"
# Reads what it can reach and looks for the marker in each file as it goes: it keeps no file, so its memory and the
# verdict do not depend on what the host holds. The places a leak would land (its working folder, /tmp) are read
# whole; the host's /home and /opt, best effort within 30 s (a busy machine's /opt holds gigabytes).
DUMP = (
    "import json, os, time\n"
    f"marker = {MARKER[:7]!r} + {MARKER[7:]!r}  # never written whole in the student's own code\n"
    "found = marker in json.dumps({'inputs': list(_ih), 'env': dict(os.environ)})\n"
    "deadline = time.monotonic() + 30\n"
    "for top in (os.getcwd(), '/tmp', '/home', '/opt'):\n"
    "    for d, _, fs in os.walk(top):\n"
    "        if found or (top in ('/home', '/opt') and time.monotonic() > deadline):\n"
    "            break\n"
    "        for f in fs:\n"
    "            try:\n"
    "                found = found or marker in open(os.path.join(d, f), errors='replace').read(200000)\n"
    "            except Exception:\n"
    "                pass\n"
    "print('FOUND' if found else 'NOT FOUND')\n"
)


def build(course: Path) -> list[str]:
    copy_course(course)
    source = course / "solutions" / ASSIGNMENT / NB
    nb = nbt.read(source)
    marked = 0
    for cell in nb.cells:
        if nbt.HIDDEN_BEGIN in cell.source:
            cell.source = cell.source.replace(nbt.HIDDEN_BEGIN, f"{nbt.HIDDEN_BEGIN}\n# {MARKER}", 1)
            marked += 1
    assert marked, "the source has no hidden block to mark"
    nbt.write(nb, source)
    release = nbt.read(ROOT / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB))
    wrong = "def softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n"
    students = {
        "reference": {},
        "wrong": {"softmax": wrong},
        "crash": {"dot_product_scores": ref["dot_product_scores"] + CRASH},
    }
    for student, answers in students.items():
        nbt.write(nbt.with_answers(release, {**ref, **answers}), course / "submitted" / student / ASSIGNMENT / NB)
    hostile = nbt.with_answers(release, ref)
    index = next(i for i, c in enumerate(hostile.cells) if nbt.nbgrader_meta(c).get("grade_id") == "softmax")
    hostile.cells.insert(index + 1, nbformat.v4.new_code_cell(DUMP))
    nbt.write(hostile, course / "submitted" / "hostile" / ASSIGNMENT / NB)
    return [*students, "hostile"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and workers on 127.0.0.1, killed in the finalizer whatever happens."""

    def __init__(self, tmp: Path, workers: int, tls: dict | None = None):
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.tmp = tmp
        self.received = tmp / "received"
        self.tls = tls
        port = free_port()
        scheme = "tls" if tls else "tcp"
        self.address = f"{scheme}://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "2",
            "GRADING_DASK_RECEIVED_DIR": str(self.received),
        }
        flags = []
        if tls:
            flags = ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]]
            self.env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] = "True"
        self._start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard", *flags], "scheduler"
        )
        self.wait_port(port)
        for _ in range(workers):
            self.add_worker(flags)

    def _start(self, cmd, name) -> subprocess.Popen:
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def add_worker(self, flags=None):
        if flags is None and self.tls:
            flags = ["--tls-ca-file", self.tls["ca"], "--tls-cert", self.tls["cert"], "--tls-key", self.tls["key"]]
        proc = self._start(
            [
                DASK,
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--preload",
                "attention_course.grading.dask_worker",
                "--death-timeout",
                "120",
                *(flags or []),
            ],
            "worker",
        )
        self.workers.append(proc)

    @staticmethod
    def wait_port(port: int, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.3)
        raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(self.tmp.glob("*.log")))


def start(request, tmp: Path, workers: int, tls: dict | None = None) -> Cluster:
    cluster = Cluster(tmp, workers, tls)
    request.addfinalizer(cluster.close)
    return cluster


def grade(course: Path, *extra: str, timeout: float = 900, wait: bool = True):
    env = {**os.environ}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    cmd = [
        str(VENV_BIN / "python"),
        "-m",
        "attention_course.grading",
        "--course",
        str(course),
        "grade",
        ASSIGNMENT,
        "--no-progress",
        "--cell-timeout",
        "60",
        "--memory",
        "2",
        *extra,
    ]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def rows(course: Path) -> dict:
    keep = ("raw_score", "score", "max_score", "status", "reason")
    with open(course / "grades.csv", newline="") as fh:
        return {r["student_id"]: {k: r[k] for k in keep} for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    course = tmp_path_factory.mktemp("local") / "course"
    students = build(course)
    proc = grade(course, "--jobs", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {
        "course": course,
        "students": students,
        "scores": gradebook_scores(ASSIGNMENT, course, students),
        "rows": rows(course),
    }


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    return start(request, tmp_path_factory.mktemp("cluster"), 2)


def test_the_cluster_grades_exactly_as_this_machine(local, cluster, tmp_path):
    course = tmp_path / "course"
    build(course)
    proc = grade(course, "--scheduler", cluster.address)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + cluster.logs()
    assert "Dask cluster at tcp://127.0.0.1:" in proc.stdout and "judge service on 127.0.0.1:" in proc.stdout
    assert gradebook_scores(ASSIGNMENT, course, local["students"]) == local["scores"]
    assert rows(course) == local["rows"]
    grades = rows(course)
    assert float(grades["reference"]["score"]) == 10 and float(grades["hostile"]["score"]) == 10
    assert float(grades["wrong"]["score"]) < 10 and "kernel died" in grades["crash"]["reason"], grades
    # nothing of the hidden tests reached a worker: not in what each worker received, not in the sandbox
    received = sorted(cluster.received.glob("*.json"))
    assert len(received) >= 4, received
    for path in received:
        text = path.read_text()
        job = json.loads(text)
        assert MARKER not in text and nbt.HIDDEN_BEGIN not in text and "judge_key" not in text, path
        assert "hidden" not in " ".join(job["files"]) and set(job) >= {"notebook", "files", "judge"}
    executed = nbformat.read(course / "autograded" / "hostile" / ASSIGNMENT / NB, as_version=4)
    dumped = [c for c in executed.cells if "os.walk(top)" in c.source]
    assert len(dumped) == 1, "the hostile cell is not in the executed notebook"
    assert [o.get("text") for o in dumped[0].outputs] == ["NOT FOUND\n"], dumped[0].outputs
    # the instructor's copy of the executed notebook has the test sources back (merged on this side)
    assert any(MARKER in c.source for c in executed.cells)


def test_a_worker_killed_half_way_loses_nothing(local, cluster, tmp_path):
    course = tmp_path / "course"
    build(course)
    before = set(cluster.received.glob("*.json"))
    proc = grade(course, "--scheduler", cluster.address, "--force", wait=False)
    try:
        end = time.monotonic() + 300
        while time.monotonic() < end and not list((course / "autograded").glob(f"*/{ASSIGNMENT}/*.grading.json")):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.5)
        # half-way: one notebook saved; the victim is the worker that started a job last (it is running it)
        started = [json.loads(p.read_text()) for p in set(cluster.received.glob("*.json")) - before]
        alive = {w.pid: w for w in cluster.workers if w.poll() is None}
        busy = max((j for j in started if j["pid"] in alive), key=lambda j: j["time"])
        victim = alive[busy["pid"]]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        cluster.add_worker()  # the class finishes on the other worker; a replacement joins for later tests
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0, out[-4000:] + cluster.logs()
    assert gradebook_scores(ASSIGNMENT, course, local["students"]) == local["scores"]
    assert rows(course) == local["rows"]
    rerun = len(set(cluster.received.glob("*.json")) - before)
    assert rerun > len(local["students"]), f"{rerun} jobs received: the killed worker's job was not run again"


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    course = tmp_path / "course"
    copy_course(course)
    proc = grade(course, "--scheduler", f"tcp://127.0.0.1:{free_port()}", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot reach the Dask scheduler" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def make_certs(d: Path) -> dict:
    """A throwaway CA and one certificate it signs (used by scheduler, workers and the instructor)."""

    def ssl_(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ssl_(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    )
    ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl_(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return {"ca": str(d / "ca.pem"), "cert": str(d / "node.pem"), "key": str(d / "node.key")}


def test_a_tls_cluster_grades_the_same(request, local, tmp_path):
    certs = make_certs(tmp_path)
    (tmp_path / "tls").mkdir()
    tls = start(request, tmp_path / "tls", 1, certs)
    course = tmp_path / "course"
    build(course)
    for student in ("crash", "hostile"):  # two students are enough here
        shutil.rmtree(course / "submitted" / student)
    plain = grade(course, "--scheduler", tls.address)  # no certificate: refused in one line
    assert plain.returncode == 2 and "tls://" in plain.stderr and "Traceback" not in plain.stderr, plain.stderr
    proc = grade(
        course,
        "--scheduler",
        tls.address,
        "--tls-ca-file",
        certs["ca"],
        "--tls-cert",
        certs["cert"],
        "--tls-key",
        certs["key"],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + tls.logs()
    assert ", TLS)" in proc.stdout
    scores = gradebook_scores(ASSIGNMENT, course, ["reference", "wrong"])
    assert scores == {k: v for k, v in local["scores"].items() if k[1] in ("reference", "wrong")}


def test_the_judge_service_says_nothing_to_a_wrong_token(tmp_path):
    from attention_course.grading.judge_service import JudgeService

    service = JudgeService("127.0.0.1", 0, tmp_path)
    try:
        token = service.register(
            {"names": ["softmax"], "key": "00" * 32, "cells": [[3, "test", "t", "assert True"]], "cell_timeout": 5}
        )
        for hello in (
            {"token": "0" * 64, "run": "r", "cell": 3, "timeout": 5},  # unknown token
            {"token": token, "run": "r", "cell": 2, "timeout": 5},
        ):  # a cell that is not a test
            with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
                s.sendall(json.dumps(hello).encode() + b"\nC")
                try:
                    said = s.recv(100)
                except ConnectionResetError:  # closed with our unread byte in its buffer
                    said = b""
                assert said == b""  # closed, nothing said
        assert service.results(token, "r", wait=1) == {}
        assert service.sock.getsockname()[0] == "127.0.0.1"
    finally:
        service.close()
