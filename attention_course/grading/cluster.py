"""The instructor's side of grading on a Dask cluster (`make grade DASK_SCHEDULER=tls://host:8786`).

Trust stays where it is on one machine: this process alone holds `solutions/`, the course secret and the
gradebook. Workers (dask_worker.py) get a redacted job: the assembled notebook with each test cell's source
replaced by a placeholder (its metadata kept), the student's files, limits, and the address and a per-job random
token of the **judge service** that runs here. At a test cell the worker relays the kernel agent's connection,
unread, to the service; the service authenticates the token and hands the connection to that job's **judge
process** (a forkserver child of this process, one per job: torch's random generator and stdout are process
wide, so judges cannot share a process), which runs the locked set-up cells and the test cell with `Judge`
exactly as on one machine. The worker's task returns plain data (statuses, the executed notebook as JSON text);
this process checks its types, merges in the judged results and the original test sources, and scores and
saves with the same `finish`/`save` as the local path.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import multiprocessing
import os
import secrets
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import nbformat

from attention_course.grading.dask_worker import HELLO_MAX, PLAIN, relay
from attention_course.grading.records import RunStatus
from attention_course.notebooks import HIDDEN_BEGIN, HIDDEN_END

PLACEHOLDER = "# test cell: judged by the instructor's grader (its source is not sent to workers)\n"
ALLOWED_FAILURES = 2  # a submission that kills this many workers ends as that student's grader error


class SetupError(Exception):
    """A cluster that cannot be used: one line for the instructor."""


def is_test(cell) -> bool:
    return (
        cell.cell_type == "code"
        and cell.metadata.get("grading", {}).get("origin") == "source"
        and bool(cell.metadata.get("nbgrader", {}).get("grade"))
    )


def redact(nb) -> tuple[str, dict[int, tuple[str, str]]]:
    """The notebook a worker may see (test cells' sources replaced) and index -> (grade_id, source) of the tests."""
    import copy

    red = copy.deepcopy(nb)
    tests = {}
    for i, cell in enumerate(red.cells):
        if is_test(cell):
            tests[i] = (cell.metadata["nbgrader"]["grade_id"], cell.source)
            cell.source = PLACEHOLDER
            cell.outputs = []
    text = nbformat.writes(red)
    for gid, source in tests.values():
        for line in source.splitlines():
            if len(line.strip()) >= 16 and line in text and line.strip() not in (HIDDEN_BEGIN, HIDDEN_END):
                # a test line that also appears in a student or locked cell is no secret; any other is a bug here
                if not any(line in c.source for c in nb.cells if not is_test(c)):
                    raise AssertionError(f"test source of {gid} would reach a worker")
    if HIDDEN_BEGIN in text or HIDDEN_END in text:
        if not any(HIDDEN_BEGIN in c.source or HIDDEN_END in c.source for c in nb.cells if not is_test(c)):
            raise AssertionError("a hidden-test block would reach a worker")
    return text, tests


# --- the judge process (one per job, forkserver child) ------------------------------------------------------


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


class _Job:
    def __init__(self, spec: dict):
        self.spec = spec
        self.run: str | None = None
        self.process = None
        self.conn = None
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
        self.jobs: dict[str, _Job] = {}
        self.lock = threading.Condition()
        self.counts = {"connections": 0, "chunks": 0, "bytes": 0, "relay_seconds": 0.0}
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["attention_course.grading.judge"])
        self.closed = False
        self._stopping: list[_Job] = []
        self.thread = threading.Thread(target=self._accept, daemon=True, name="judge-service")
        self.thread.start()

    def register(self, spec: dict) -> str:
        token = secrets.token_hex(32)
        with self.lock:
            self.jobs[hashlib.sha256(token.encode()).hexdigest()] = _Job(spec)
        return token

    def _job(self, token) -> _Job | None:
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

    def _stop(self, job: _Job) -> None:
        with job.start_lock:
            self._stop_locked(job)

    def _stop_locked(self, job: _Job) -> None:
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

    def _start(self, job: _Job, run: str) -> None:
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
        except (OSError, ValueError, ssl.SSLError, RuntimeError, UnicodeDecodeError):
            if os.environ.get("GRADING_DEBUG"):
                import traceback

                traceback.print_exc()
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _judge(self, job: _Job, conn, index: int, run: str, timeout: int) -> None:
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
        inner.connect(job.sock_path)
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


# --- connecting, preflight ---------------------------------------------------------------------------------


def loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def security(tls: dict | None):
    """The client's Dask security: explicit --tls-* files, else what Dask's config says
    (DASK_DISTRIBUTED__COMM__TLS__*)."""
    from distributed.security import Security

    if tls and any(tls.values()):
        return Security(
            tls_ca_file=tls.get("ca"),
            tls_client_cert=tls.get("cert"),
            tls_client_key=tls.get("key"),
            require_encryption=True,
        )
    return Security()


def server_context(sec) -> ssl.SSLContext:
    """TLS for the judge service, from the same files as the Dask client's: the cluster's CA must have signed
    the worker's certificate (client authentication required)."""
    if not (sec.tls_ca_file and sec.tls_client_cert):
        raise SetupError(
            "a tls:// scheduler needs the CA file and a certificate (--tls-ca-file, --tls-cert, "
            "--tls-key, or DASK_DISTRIBUTED__COMM__TLS__CA_FILE / __CLIENT__CERT / __CLIENT__KEY)"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=sec.tls_ca_file)
    ctx.load_cert_chain(sec.tls_client_cert, sec.tls_client_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def connect(address: str, tls: dict | None, wait_workers: float = 60):
    """A Client on the scheduler, its workers preflighted; SetupError (one line) when it cannot be used."""
    import logging

    import dask
    from distributed import Client

    from attention_course.grading.dask_worker import package_fingerprint, preflight

    for name in ("distributed", "distributed.client", "distributed.comm", "distributed.batched"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    sec = security(tls)
    if address.startswith("tls://") and not sec.tls_ca_file:
        raise SetupError(
            f"{address}: a tls:// scheduler needs --tls-ca-file/--tls-cert/--tls-key "
            "(or DASK_DISTRIBUTED__COMM__TLS__* settings)"
        )
    dask.config.set({"distributed.comm.timeouts.connect": "10s"})
    try:
        client = Client(address, security=sec, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SetupError(
            f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=wait_workers)
        except TimeoutError:
            raise SetupError(f"the Dask scheduler at {address} has no workers (waited {wait_workers:.0f} s)") from None

        def set_failures(dask_scheduler=None):
            dask_scheduler.allowed_failures = ALLOWED_FAILURES
            return ALLOWED_FAILURES

        try:
            client.run_on_scheduler(set_failures)
        except Exception:
            pass
        reports = client.run(preflight)
        mine = package_fingerprint()
        bad = []
        for addr, rep in sorted(reports.items()):
            if rep.get("sandbox"):
                bad.append(f"worker {addr} cannot sandbox: {rep['sandbox']}")
            elif rep.get("version") != mine:
                bad.append(f"worker {addr} runs other grading code ({rep.get('version')}, here {mine})")
        if bad:
            raise SetupError("; ".join(bad) + ": fix or stop these workers, then grade again")
        return client, sec, sorted(reports)
    except BaseException:
        client.close()
        raise


def check_plain(result) -> str | None:
    """None if `result` is a dict of plain values (str, int, float, bool, None) under str keys, else why not."""
    if type(result) is not dict:
        return f"the worker returned a {type(result).__name__}, not a dict"
    for key, value in result.items():
        if type(key) is not str or type(value) not in PLAIN:
            return f"the worker returned a {type(value).__name__} under {str(key)[:40]!r}"
    return None


def merge(assembled, tests: dict[int, tuple[str, str]], result: dict, judged: dict[int, dict]):
    """The worker's statuses and notebook with the judged test results and the original test sources put back:
    what runner.execute returns on one machine."""
    from attention_course.grading.runner import _judge_outputs

    cells = json.loads(result["cells"])
    nb = nbformat.from_dict(json.loads(result["notebook"]))  # validated when saved, as on the local path
    if nb.get("nbformat") != 4 or type(nb.get("cells")) is not list:
        raise ValueError("the worker's notebook is not nbformat 4")
    if (
        type(cells) is not list
        or len(cells) != len(assembled.cells)
        or len(nb.cells) != len(assembled.cells)
        or not all(type(c) is dict for c in cells)
    ):
        raise ValueError("the worker's notebook does not match the job")
    for index, (_gid, source) in tests.items():
        cell = nb.cells[index]
        cell.source = source
        cell.metadata = assembled.cells[index].metadata
        info = cells[index]
        if info.get("status") != "judged":
            cells[index] = {k: v for k, v in info.items() if k in ("status", "seconds")}
            if cells[index].get("status") != RunStatus.NOT_RUN:
                cells[index]["status"] = RunStatus.NOT_RUN
            continue
        out = judged.get(index) or {
            "status": RunStatus.ERROR,
            "ename": "KernelLost",
            "evalue": "the worker's relay never reached the grader's judge",
            "stdout": "",
        }
        cell.outputs = _judge_outputs(out)
        entry = {"status": out["status"]}
        if out["status"] != RunStatus.OK:
            entry.update(ename=out.get("ename", "Error"), evalue=out.get("evalue", ""))
        if "seconds" in info:
            entry["seconds"] = info["seconds"]
        cells[index] = entry
    return {"cells": cells, "died": result.get("died"), "seconds": result.get("seconds"), "notebook": nb}


# --- the pool that `grade` uses for a cluster ------------------------------------------------------------


def judge_bind(opts_scheduler: str, judge_address: str | None) -> tuple[str, int]:
    if judge_address:
        host, _, port = judge_address.rpartition(":") if ":" in judge_address else (judge_address, "", "0")
        try:
            return host or "127.0.0.1", int(port or 0)
        except ValueError:
            raise SetupError(f"--judge-address {judge_address!r}: expected HOST or HOST:PORT") from None
    if loopback(opts_scheduler):
        return "127.0.0.1", 0
    raise SetupError(
        f"the scheduler {opts_scheduler} is not on this machine: name the address the workers reach "
        "this machine's judge service at with --judge-address HOST[:PORT] (JUDGE_ADDRESS=...)"
    )


class DaskPool:
    """Grading on a Dask cluster: what `grade` needs of a pool (see LocalPool in grade.py)."""

    def __init__(self, opts, scratch: Path, out):
        host, port = judge_bind(opts.scheduler, opts.judge_address)
        self.client, sec, self.workers = connect(opts.scheduler, opts.tls)
        try:
            context = server_context(sec) if opts.scheduler.startswith("tls://") else None
            try:
                self.service = JudgeService(host, port, scratch, context)
            except OSError as exc:
                raise SetupError(f"the judge service cannot listen on {host}:{port}: {exc}") from None
        except BaseException:
            self.client.close()
            raise
        self.tls = context is not None
        self.scheduler = opts.scheduler
        self.tokens: dict[str, tuple] = {}
        self.out = out
        self.stats = {"tasks": 0, "instructor_s": 0.0, "worker_s": 0.0, "save_s": 0.0}
        self._done: dict[str, tuple] = {}
        import concurrent.futures as cf

        self.saver_n = max(1, os.cpu_count() or 1)
        self.savers = cf.ProcessPoolExecutor(
            max_workers=self.saver_n, mp_context=multiprocessing.get_context("forkserver")
        )
        if not self.tls and not loopback(opts.scheduler):
            print(
                f"warning: {opts.scheduler} is not TLS: submissions and the judge's traffic cross the network "
                "in the clear (use tls://)",
                file=out,
            )

    def describe(self) -> str:
        return (
            f"the Dask cluster at {self.scheduler} ({len(self.workers)} worker(s); judge service on "
            f"{self.service.host}:{self.service.port}{', TLS' if self.tls else ''})"
        )

    def warm(self) -> None:
        from attention_course.grading import grade as g

        for _ in range(self.saver_n):
            self.savers.submit(g._warm)  # the savers import nbconvert while this process plans
        # merge() needs the runner module (it imports torch): once, in the background, not in the first receive
        threading.Thread(target=__import__, args=("attention_course.grading.runner",), daemon=True).start()

    def payload(self, job, course, opts) -> tuple[dict, str, object, dict]:

        run = job.run
        assembled = nbformat.read(run["notebook"], as_version=4)
        text, tests = redact(assembled)
        work = Path(run["work_dir"])
        files = {
            str(p.relative_to(work)): p.read_bytes()
            for p in sorted(work.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
        cells = []
        for i, cell in enumerate(assembled.cells):
            if i in tests:
                cells.append([i, "test", tests[i][0], tests[i][1]])
            elif (
                cell.cell_type == "code"
                and cell.metadata.get("grading", {}).get("origin") == "source"
                and cell.source.strip()
            ):
                cells.append([i, "locked", "", cell.source])
        token = self.service.register(
            {
                "names": run["student_names"],
                "key": run["judge_key"],
                "cells": cells,
                "cell_timeout": run["cell_timeout"],
            }
        )
        payload = {
            "notebook": text,
            "files": files,
            "cell_timeout": run["cell_timeout"],
            "notebook_timeout": run["notebook_timeout"],
            "limits": run["limits"],
            "token": token,
            "judge": {"host": self.service.host, "port": self.service.port, "tls": self.tls},
        }
        return payload, token, assembled, tests

    def submit(self, job, course, opts):
        from attention_course.grading.dask_worker import grade_task

        payload, token, assembled, tests = self.payload(job, course, opts)
        future = self.client.submit(
            grade_task, payload, pure=False, retries=1, key=f"grade-{hashlib.sha256(token.encode()).hexdigest()[:16]}"
        )
        self.tokens[future.key] = (token, assembled, tests, str(course.root), opts.feedback)
        return future

    def as_completed(self, futures):
        """Yields each task's future once its result is merged (a thread, in arrival order) and saved: scoring,
        saving and rendering feedback run in a process pool on this machine's cores, as they do in the local
        workers, so the instructor's process is not the bottleneck of a large cluster."""
        import queue

        from distributed import as_completed

        from attention_course.grading import grade as g

        jobs = dict(futures)
        done: queue.Queue = queue.Queue()

        def consume():
            for future in as_completed(list(jobs), loop=self.client.loop):
                job = jobs[future]
                try:
                    kind, value = self._receive(future, job)
                except BaseException as exc:
                    kind, value = (
                        "state",
                        g.finish(
                            job.state, None, f"receiving the result failed: {type(exc).__name__}: {str(exc)[:200]}"
                        ),
                    )
                if kind == "state":
                    done.put((future, value, None))
                else:
                    saving = self.savers.submit(g._conclude_timed, *value)
                    saving.add_done_callback(lambda f, future=future: done.put((future, None, f)))

        threading.Thread(target=consume, daemon=True, name="dask-results").start()
        for _ in range(len(jobs)):
            future, state, saving = done.get()
            self._done[future.key] = (state, saving)
            yield future

    def state(self, future, job) -> dict:
        state, saving = self._done.pop(future.key)
        if saving is not None:
            state, seconds = saving.result()
            self.stats["save_s"] += seconds
        return state

    def _receive(self, future, job) -> tuple[str, object]:
        """("state", final state) for a failed task, else ("save", arguments of grade._conclude)."""
        from distributed import KilledWorker

        from attention_course.grading import grade as g

        token, assembled, tests, root, feedback = self.tokens.pop(future.key)
        t0 = time.monotonic()
        try:
            try:
                result = future.result()
            except KilledWorker:
                return "state", g.finish(
                    job.state,
                    None,
                    f"the submission's task killed {ALLOWED_FAILURES + 1} "
                    "workers in a row (KilledWorker); look at it by hand",
                )
            except Exception as exc:
                return "state", g.finish(job.state, None, f"the worker failed: {type(exc).__name__}: {str(exc)[:200]}")
            why = check_plain(result)
            if why:
                return "state", g.finish(job.state, None, why)
            if result.get("error"):  # no sandbox there, or the relay could not reach the judge: retried next run
                return "state", g.finish(job.state, None, str(result["error"])[:300])
            judged = self.service.results(token, result.get("run"))
            try:
                merged = merge(assembled, tests, result, judged)
            except (ValueError, KeyError, TypeError) as exc:
                return "state", g.finish(job.state, None, f"the worker's result is malformed: {str(exc)[:200]}")
            self.stats["tasks"] += 1
            self.stats["worker_s"] += float(result.get("seconds") or 0)
            return "save", (job.run, job.state, str(job.state_path), root, feedback, merged, None)
        finally:
            self.service.forget(token)
            future.release()
            self.stats["instructor_s"] += time.monotonic() - t0

    def report(self) -> str:
        """Counted traffic and the instructor's serial time per notebook (the benchmark reads this line)."""
        n, c = max(1, self.stats["tasks"]), self.service.counts
        return (
            f"dask: {self.stats['tasks']} task(s), {c['connections']} judge connection(s), {c['chunks']} "
            f"relayed chunk(s) ({c['bytes'] / 1e6:.2f} MB), worker {self.stats['worker_s'] / n:.2f} s/notebook, "
            f"instructor {self.stats['instructor_s'] / n:.3f} s/notebook serial (receive, merge) + "
            f"{self.stats['save_s'] / n:.3f} s/notebook in {self.saver_n} saver process(es) (score, save, feedback)"
        )

    def close(self) -> None:
        try:
            if self.stats["tasks"]:
                print(self.report(), file=self.out)
            self.service.close()
        finally:
            self.savers.shutdown(cancel_futures=True)
            self.client.close()
