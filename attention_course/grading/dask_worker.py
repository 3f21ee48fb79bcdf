"""The worker side of grading on a Dask cluster: sandboxed kernels, plain data back, no secrets here.

A worker receives a *redacted* job (cluster.py): the assembled notebook with every test cell's source replaced
by a placeholder, the student's submission files, limits, and the address and per-job token of the
instructor's judge service. It runs the same runner loop as `make grade` on one machine (runner.py), in the
same bubblewrap sandbox with a leased uid and cgroup limits; at a test cell the kernel's agent connects to the
worker's unix socket as usual, and `RemoteLink` relays those bytes, unread, to the judge service over TCP (TLS
when the cluster uses it). The judge (hidden tests, the course secret) never leaves the instructor's process.
The task returns only str/int/float/bool/None values.

Start a worker (as root, in the course's environment, with bubblewrap installed):

    dask worker tls://scheduler:8786 --nworkers 1 --nthreads 1 \\
        --preload attention_course.grading.dask_worker --tls-ca-file ca.pem --tls-cert w.pem --tls-key w.key

`--preload` checks at start that the worker can sandbox and refuses to start otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import socket
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from attention_course.grading.interfaces import JudgeLink
from attention_course.grading.options import grader_version
from attention_course.grading.records import RunSpec, RunStatus
from attention_course.grading.relay import client_context, relay


def preflight() -> dict[str, Any]:
    """Run on every worker before grading: can it sandbox, and does it run the same grading code?"""
    from attention_course.grading.sandbox import available

    return {"sandbox": available(), "version": grader_version(), "host": socket.gethostname()}


def dask_setup(worker: Any) -> None:  # `dask worker --preload attention_course.grading.dask_worker`
    from attention_course.grading.sandbox import available

    why = available()
    if why:
        raise RuntimeError(f"this worker cannot sandbox submissions: {why}")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


# --- relaying bytes, unread ------------------------------------------------------------------------------


class RemoteLink:
    """The runner's judge link on a worker: each test cell's agent connection is relayed to the judge service."""

    wait_ok = True

    def __init__(
        self,
        job: dict[str, Any],
        listener: socket.socket,
        judge: dict[str, Any],
        token: str,
        run_id: str,
        context: ssl.SSLContext | None,
    ):
        self.listener, self.judge, self.token, self.run_id, self.context = listener, judge, token, run_id, context
        self.abandoned = False
        self.errors: list[str] = []
        self._socks: list[socket.socket] = []

    def locked(self, index: int, source: str) -> None:
        pass  # the judge service runs the locked cells in its own namespace, in order

    def abandon(self) -> None:
        self.abandoned = True
        for s in list(self._socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def test(self, index: int, gid: str, source: str, timeout: int) -> dict[str, Any]:
        self.abandoned = False
        deadline = time.monotonic() + timeout
        agent = None
        try:
            tcp = socket.create_connection((self.judge["host"], self.judge["port"]), timeout=min(30, timeout + 5))
            if self.context is not None:
                tcp = self.context.wrap_socket(tcp)
            self._socks.append(tcp)
            hello = json.dumps({"token": self.token, "run": self.run_id, "cell": index, "timeout": timeout})
            tcp.sendall(hello.encode() + b"\n")
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(
                f"cannot reach the judge service at {self.judge['host']}:{self.judge['port']}: "
                f"{type(exc).__name__}: {exc}"[:300]
            )
            return {"status": RunStatus.JUDGED}
        try:
            self.listener.settimeout(0.2)
            while agent is None and not self.abandoned and time.monotonic() < deadline:
                try:
                    agent, _ = self.listener.accept()
                except TimeoutError:
                    continue
            if agent is None:
                return {"status": RunStatus.JUDGED}  # the judge service records that the kernel did not answer
            self._socks.append(agent)
            agent.settimeout(None)
            tcp.settimeout(None)
            tcp.sendall(b"C")
            relay(agent, tcp, lambda: self.abandoned)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for s in (agent, tcp):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            self._socks.clear()
        return {"status": RunStatus.JUDGED}


# --- the task ----------------------------------------------------------------------------------------------


def _received(job: dict[str, Any]) -> str:
    h = hashlib.sha256(job["notebook"].encode())
    for rel in sorted(job["files"]):
        h.update(rel.encode() + hashlib.sha256(job["files"][rel]).digest())
    return h.hexdigest()


def grade_task(job: dict[str, Any]) -> dict[str, Any]:
    """One submission notebook on this worker. Returns only plain values (the instructor checks the types)."""
    import nbformat

    from attention_course.grading import runner
    from attention_course.grading.sandbox import available, lease_uid

    received = _received(job)
    dump = os.environ.get("GRADING_DASK_RECEIVED_DIR")  # for tests and audits: what exactly a worker was sent
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {
                "notebook": job["notebook"],
                "files": {k: v.decode("latin-1") for k, v in job["files"].items()},
                **{k: v for k, v in job.items() if k not in ("notebook", "files", "token")},
                "pid": os.getpid(),
                "time": time.time(),
            }
        )
        (Path(dump) / f"{received[:16]}-{secrets.token_hex(4)}.json").write_text(text)
    why = available()
    if why:
        return {"error": f"worker {socket.gethostname()} cannot sandbox: {why}"[:300], "received_sha256": received}
    uid, lock_fd = lease_uid()
    box = Path(tempfile.mkdtemp(prefix="grading-dask-"))
    try:
        os.chmod(box, 0o755)
        run = RunSpec(
            box=str(box),
            cell_timeout=job["cell_timeout"],
            notebook_timeout=job["notebook_timeout"],
            limits=job["limits"],
            uid=uid,
        )
        work = run.work_dir
        work.mkdir()
        for rel, data in job["files"].items():
            dest = (work / rel).resolve()
            if not str(dest).startswith(str(work.resolve()) + os.sep) or ".." in Path(rel).parts:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        run.notebook.write_text(job["notebook"])
        context = None
        if job["judge"].get("tls"):
            from distributed import get_worker

            sec: Any = get_worker().security
            context = client_context(sec.tls_ca_file, sec.tls_worker_cert, sec.tls_worker_key)
        run_id = secrets.token_hex(8)
        links: list[RemoteLink] = []

        def factory(_job: dict[str, Any], listener: socket.socket) -> JudgeLink:
            links.append(RemoteLink(_job, listener, job["judge"], job["token"], run_id, context))
            return links[-1]

        result = asyncio.run(asyncio.wait_for(runner.execute(run.for_runner(), factory), job["notebook_timeout"] + 180))
        errors = links[0].errors if links else []
        return {
            "run": run_id,
            "cells": json.dumps(result["cells"]),
            "died": result["died"],
            "seconds": float(result["seconds"]),
            "notebook": nbformat.writes(result["notebook"]),
            "error": "; ".join(errors)[:500] or None,
            "received_sha256": received,
            "worker": socket.gethostname(),
        }
    finally:
        shutil.rmtree(box, ignore_errors=True)
        os.close(lock_fd)
