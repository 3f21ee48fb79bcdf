"""The judge service of a cluster run: a TCP (or TLS) server in the instructor's process that authenticates each
relayed connection by its job's token and hands it to that job's judge process (a forkserver child, one per job:
torch's random generator and stdout are process wide), which runs the locked set-up cells and the test cell with
`Judge` exactly as on one machine."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import secrets
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from attention_course.grading.records import RunStatus
from attention_course.grading.relay import HELLO_MAX, relay

log = logging.getLogger(__name__)


def _judge_main(conn, sock_path: str, names: list[str], key_hex: str, cells: list) -> None:
    """cells: [index, "locked"|"test", grade_id, source]. Answers ("test", index, timeout) with judged dicts."""
    from attention_course.grading.judge import Judge

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    judge = Judge(listener, set(names), bytes.fromhex(key_hex))
    conn.send("ready")
    done = -1
    tests = {c[0]: c for c in cells if c[1] == "test"}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        _, index, timeout = message
        for c in cells:
            if c[1] == "locked" and done < c[0] < index:
                judge.run_locked(c[3])
        done = max(done, index)
        conn.send(judge.run_test(tests[index][2], tests[index][3], timeout))
    listener.close()


class JudgeJob:
    """One registered job: its spec, the judge process of its current run, and the results judged so far."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.run: str | None = None
        self.process: Any = None  # the judge process of the current run (multiprocessing's, forkserver)
        self.conn: Any = None  # its end of the pipe
        self.sock_path: str | None = None
        self.results: dict[int, dict] = {}
        self.inflight = 0
        self.start_lock = threading.Lock()


class JudgeService:
    """TCP (or TLS) server in the instructor's process: authenticated relays into per-job judge processes."""

    def __init__(self, host: str, port: int, scratch: Path, context: ssl.SSLContext | None = None):
        self.scratch, self.context = scratch, context
        self.sock = socket.create_server((host, port), backlog=64)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.jobs: dict[str, JudgeJob] = {}
        self.lock = threading.Condition()
        self.counts = {"connections": 0, "chunks": 0, "bytes": 0, "relay_seconds": 0.0}
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["attention_course.grading.judge"])
        self.closed = False
        self._stopping: list[JudgeJob] = []
        self.thread = threading.Thread(target=self._accept, daemon=True, name="judge-service")
        self.thread.start()

    def register(self, spec: dict) -> str:
        token = secrets.token_hex(32)
        with self.lock:
            self.jobs[hashlib.sha256(token.encode()).hexdigest()] = JudgeJob(spec)
        return token

    def _job(self, token) -> JudgeJob | None:
        if not isinstance(token, str):
            return None
        return self.jobs.get(hashlib.sha256(token.encode()).hexdigest())

    def results(self, token: str, run: str, wait: float = 60) -> dict[int, dict]:
        """The judged results of that run of the job, once no relay of it is still in flight."""
        end = time.monotonic() + wait
        with self.lock:
            job = self._job(token)
            if job is None:
                return {}
            while job.inflight and time.monotonic() < end:
                self.lock.wait(0.2)
            return dict(job.results) if job.run == run else {}

    def forget(self, token: str) -> None:
        """The job is done: its token stops working at once; its judge process is ended in the background."""
        with self.lock:
            job = self.jobs.pop(hashlib.sha256(token.encode()).hexdigest(), None)
        if job:
            threading.Thread(target=self._stop, args=(job,), daemon=True).start()
            self._stopping.append(job)

    def _stop(self, job: JudgeJob) -> None:
        with job.start_lock:
            self._stop_locked(job)

    def _stop_locked(self, job: JudgeJob) -> None:
        if job.process is not None:
            try:
                job.conn.send(None)
            except (OSError, ValueError):
                pass
            job.process.join(2)
            if job.process.is_alive():
                job.process.kill()
                job.process.join(5)
            job.process = None
        if job.sock_path:
            Path(job.sock_path).unlink(missing_ok=True)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for job in [*self.jobs.values(), *self._stopping]:
            self._stop(job)
        self.jobs.clear()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _start(self, job: JudgeJob, run: str) -> None:
        """A fresh judge process for this run of the job (a retried job starts over with a new namespace)."""
        self._stop_locked(job)
        job.run, job.results = run, {}
        job.sock_path = str(self.scratch / f"judge-{secrets.token_hex(6)}.sock")
        parent, child = self.ctx.Pipe()
        s = job.spec
        job.process = self.ctx.Process(
            target=_judge_main, args=(child, job.sock_path, s["names"], s["key"], s["cells"]), daemon=True
        )
        job.process.start()
        child.close()
        job.conn = parent
        if not parent.poll(120) or parent.recv() != "ready":
            raise RuntimeError("the judge process did not start")

    def _serve(self, conn: socket.socket) -> None:
        job = None
        try:
            conn.settimeout(30)
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            hello = b""
            while not hello.endswith(b"\n") and len(hello) < HELLO_MAX:
                chunk = conn.recv(1)  # byte by byte: what follows the line is the relayed traffic
                if not chunk:
                    return
                hello += chunk
            msg = json.loads(hello.decode())
            job = self._job(msg.get("token")) if isinstance(msg, dict) else None
            if job is None:
                job = None
                return  # unknown token: nothing is said
            index, run, timeout = msg.get("cell"), msg.get("run"), msg.get("timeout")
            tests = {c[0] for c in job.spec["cells"] if c[1] == "test"}
            if (
                type(index) is not int
                or index not in tests
                or not isinstance(run, str)
                or len(run) > 64
                or type(timeout) not in (int, float)
            ):
                job = None
                return
            timeout = max(1, min(int(timeout), job.spec["cell_timeout"]))
            with self.lock:
                job.inflight += 1
            try:
                self._judge(job, conn, index, run, timeout)
            finally:
                with self.lock:
                    job.inflight -= 1
                    self.lock.notify_all()
        except (OSError, ValueError, ssl.SSLError, RuntimeError, UnicodeDecodeError) as exc:
            log.debug("a relayed connection ended: %r", exc, exc_info=True)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _judge(self, job: JudgeJob, conn, index: int, run: str, timeout: int) -> None:
        with job.start_lock:
            if job.run != run:
                self._start(job, run)
            if index in job.results:
                return  # judged already in this run
        conn.settimeout(timeout)
        try:
            go = conn.recv(1)
        except (TimeoutError, OSError, ssl.SSLError):
            go = b""
        if go != b"C":  # the kernel's agent never connected to the worker: as Judge.run_test says it locally
            job.results[index] = {
                "status": RunStatus.ERROR,
                "ename": "KernelLost",
                "evalue": "your kernel did not answer the grader",
                "stdout": "",
            }
            return
        job.conn.send(("test", index, timeout))
        inner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        inner.connect(str(job.sock_path))
        conn.settimeout(None)
        counts: dict = {}
        t0 = time.monotonic()
        try:
            relay(conn, inner, counts=counts)
        finally:
            inner.close()
        if job.conn.poll(timeout + 60):
            judged = job.conn.recv()
        else:
            judged = {
                "status": RunStatus.ERROR,
                "ename": "KernelLost",
                "evalue": "the grader's judge did not finish",
                "stdout": "",
            }
        job.results[index] = judged
        with self.lock:
            self.counts["connections"] += 1
            self.counts["chunks"] += counts.get("chunks", 0)
            self.counts["bytes"] += counts.get("bytes", 0)
            self.counts["relay_seconds"] += time.monotonic() - t0
