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

This module is the pool (`DaskPool`); connecting and preflight are dask_client.py, the judge service
judge_service.py, what crosses to a worker and back redaction.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import nbformat

from attention_course.grading.course import Course
from attention_course.grading.dask_client import (
    SetupError,
    connect,
    judge_bind,
    loopback,
    server_context,
)
from attention_course.grading.judge_service import JudgeService
from attention_course.grading.options import Options
from attention_course.grading.planner import Job
from attention_course.grading.records import NotebookState
from attention_course.grading.redaction import check_plain, judge_cells, merge, redact
from attention_course.grading.scoring import finish
from attention_course.grading.worker import conclude_timed, warm

log = logging.getLogger(__name__)


class DaskPool:
    """Grading on a Dask cluster (an `interfaces.Pool`): redacted jobs to the workers, the judge service here,
    scoring and saving in a saver process pool on this machine."""

    def __init__(self, opts: Options, scratch: Path, out: TextIO):
        assert opts.scheduler is not None
        host, port = judge_bind(opts.scheduler, opts.judge_address)
        self.client, sec, self.workers, self.allowed_failures = connect(opts.scheduler, opts.tls)
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
        self.tokens: dict[str, tuple[str, Any, dict[int, tuple[str, str]], str, bool]] = {}
        self.out = out
        self.stats = {"tasks": 0, "instructor_s": 0.0, "worker_s": 0.0, "save_s": 0.0}
        self._done: dict[str, tuple[NotebookState | None, cf.Future | None]] = {}
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
        for _ in range(self.saver_n):
            self.savers.submit(warm)  # the savers import nbconvert while this process plans
        # merge() needs the runner module (it imports torch): once, in the background, not in the first receive
        threading.Thread(target=__import__, args=("attention_course.grading.runner",), daemon=True).start()

    def payload(self, job: Job) -> tuple[dict[str, Any], str, Any, dict[int, tuple[str, str]]]:
        """The redacted job a worker receives, its token, and what stays here to merge its result."""
        run = job.run
        assert run is not None
        assembled = nbformat.read(str(run.notebook), as_version=4)
        text, tests = redact(assembled)
        work = run.work_dir
        files = {
            str(p.relative_to(work)): p.read_bytes()
            for p in sorted(work.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }
        token = self.service.register(
            {
                "names": run.student_names,
                "key": run.judge_key,
                "cells": judge_cells(assembled, tests),
                "cell_timeout": run.cell_timeout,
            }
        )
        payload = {
            "notebook": text,
            "files": files,
            "cell_timeout": run.cell_timeout,
            "notebook_timeout": run.notebook_timeout,
            "limits": run.limits,
            "token": token,
            "judge": {"host": self.service.host, "port": self.service.port, "tls": self.tls},
        }
        return payload, token, assembled, tests

    def submit(self, job: Job, course: Course, opts: Options) -> Any:
        from attention_course.grading.dask_worker import grade_task

        payload, token, assembled, tests = self.payload(job)
        future = self.client.submit(
            grade_task, payload, pure=False, retries=1, key=f"grade-{hashlib.sha256(token.encode()).hexdigest()[:16]}"
        )
        self.tokens[future.key] = (token, assembled, tests, str(course.root), opts.feedback)
        return future

    def as_completed(self, futures: Mapping[Any, Job]) -> Iterator[Any]:
        """Yields each task's future once its result is merged (a thread, in arrival order) and saved: scoring,
        saving and rendering feedback run in a process pool on this machine's cores, as they do in the local
        workers, so the instructor's process is not the bottleneck of a large cluster."""
        from distributed import as_completed

        jobs = dict(futures)
        done: queue.Queue = queue.Queue()

        def consume() -> None:
            for future in as_completed(list(jobs), loop=self.client.loop):
                job = jobs[future]
                try:
                    failed, value = self._receive(future, job)
                except BaseException as exc:
                    why = f"receiving the result failed: {type(exc).__name__}: {str(exc)[:200]}"
                    failed, value = finish(job.state, None, why), None
                if failed is not None:
                    done.put((future, failed, None))
                elif value is not None:
                    saving = self.savers.submit(conclude_timed, *value)

                    def saved(f: cf.Future, future: Any = future) -> None:
                        done.put((future, None, f))

                    saving.add_done_callback(saved)

        threading.Thread(target=consume, daemon=True, name="dask-results").start()
        for _ in range(len(jobs)):
            future, state, saving = done.get()
            self._done[future.key] = (state, saving)
            yield future

    def state(self, future: Any, job: Job) -> NotebookState:
        state, saving = self._done.pop(future.key)
        if saving is not None:
            state, seconds = saving.result()
            self.stats["save_s"] += seconds
        assert state is not None
        return state

    def broken(self, exc: BaseException) -> bool:
        return False  # a lost worker is the scheduler's to retry (allowed-failures); the pool never breaks

    def restart(self) -> None:
        raise RuntimeError("a Dask pool is never broken: nothing to restart")

    def _receive(self, future: Any, job: Job) -> tuple[NotebookState | None, tuple | None]:
        """(final state, None) for a failed task, else (None, arguments of worker.conclude)."""
        from distributed import KilledWorker

        token, assembled, tests, root, feedback = self.tokens.pop(future.key)
        t0 = time.monotonic()
        try:
            try:
                result = future.result()
            except KilledWorker:
                killed = f"{self.allowed_failures + 1} workers" if self.allowed_failures is not None else "workers"
                lost = f"the submission's task killed {killed} in a row (KilledWorker); look at it by hand"
                return finish(job.state, None, lost), None
            except Exception as exc:
                return finish(job.state, None, f"the worker failed: {type(exc).__name__}: {str(exc)[:200]}"), None
            why = check_plain(result)
            if why:
                return finish(job.state, None, why), None
            if result.get("error"):  # no sandbox there, or the relay could not reach the judge: retried next run
                return finish(job.state, None, str(result["error"])[:300]), None
            judged = self.service.results(token, result.get("run"))
            try:
                merged = merge(assembled, tests, result, judged)
            except (ValueError, KeyError, TypeError) as exc:
                return finish(job.state, None, f"the worker's result is malformed: {str(exc)[:200]}"), None
            self.stats["tasks"] += 1
            self.stats["worker_s"] += float(result.get("seconds") or 0)
            return None, (job.run, job.state, str(job.state_path), root, feedback, merged, None)
        finally:
            self.service.forget(token)
            future.release()
            self.stats["instructor_s"] += time.monotonic() - t0

    def report(self) -> str:
        """Counted traffic and the instructor's serial time per notebook (the benchmark reads this line)."""
        n, c = max(1, int(self.stats["tasks"])), self.service.counts
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
