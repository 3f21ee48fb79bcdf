"""A grading worker on this machine (trusted, outside the sandbox): execute one planned notebook (runner.py:
its student cells in the sandbox, its tests in the judge), score it, save it; and `LocalPool`, the forkserver
process pool of such workers (the default pool)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat

from attention_course.grading.course import Course
from attention_course.grading.options import Options
from attention_course.grading.planner import Job
from attention_course.grading.records import NotebookState, NotebookStatus, RunSpec
from attention_course.grading.saving import save, writable
from attention_course.grading.scoring import finish

log = logging.getLogger(__name__)

PRELOAD = ["attention_course.grading.runner", "attention_course.grading.feedback", "nbconvert"]
SAVE_SECONDS = 300  # saving a result (its feedback page has its own, shorter limit)

_UID: tuple[int, int] | None = None  # this worker's leased sandbox uid and the lock that holds it
_COURSES: dict[str, Course] = {}


def init_worker() -> None:
    global _UID
    from attention_course.grading.sandbox import lease_uid

    _UID = lease_uid()
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    from attention_course.grading import feedback

    feedback.warm()  # every worker: the children that render its pages inherit the compiled templates


def warm() -> int:
    """Imports a worker needs, done while the parent plans (so they overlap)."""
    from nbconvert import HTMLExporter  # noqa: F401

    from attention_course.grading import feedback, runner  # noqa: F401

    return _UID[0] if _UID else 0


def run_job(run: RunSpec, state: NotebookState, state_path: str, root: str, with_feedback: bool) -> NotebookState:
    """In a worker process: execute, score, save; returns the final state."""
    from attention_course.grading import runner

    assert _UID is not None, "a worker leases its sandbox uid when it starts (init_worker)"
    run.uid = _UID[0]
    run.started.touch()  # if this worker dies now, this job is a suspect (grade._Recovery)
    result, error = None, None
    try:
        result = asyncio.run(asyncio.wait_for(runner.execute(run.for_runner()), run.notebook_timeout + 180))
    except Exception as exc:
        log.warning("%s/%s: running the notebook failed: %r", state.student, state.notebook, exc)
        error = f"{type(exc).__name__}: {exc}"[:300] + "\n" + traceback.format_exc()[-800:]
    return conclude(run, state, state_path, root, with_feedback, result, error)


def conclude(
    run: RunSpec,
    state: NotebookState,
    state_path: str,
    root: str,
    with_feedback: bool,
    result: dict[str, Any] | None,
    error: str | None,
) -> NotebookState:
    """Score and save one executed notebook (in a local worker, or in a saver process for a cluster's result)."""
    nb = None
    if result is not None:
        nb = result.pop("notebook")
        if str(result.get("died") or "").startswith("kernel could not run"):
            error, result = str(result["died"]), None
    state = finish(state, result, error)
    if state.status != NotebookStatus.GRADER_ERROR:

        def too_slow(signum, frame):
            raise TimeoutError(f"saving the result took longer than {SAVE_SECONDS} s")

        course = _COURSES.setdefault(root, Course.load(root))
        previous = signal.signal(signal.SIGALRM, too_slow)
        signal.alarm(SAVE_SECONDS)  # saving one student's result is bounded too (its page: FEEDBACK_SECONDS)
        try:
            nbformat.write(writable(nb), str(run.executed))
            save(course, state, Path(state_path), run.executed, with_feedback)
            state.saved = True
        except Exception as exc:  # this student's grader error, retried next run; the class goes on
            log.warning("%s/%s: saving the result failed: %r", state.student, state.notebook, exc)
            state = finish(state, None, f"saving the result failed: {type(exc).__name__}: {exc}"[:300])
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    return state


def conclude_timed(*args: Any) -> tuple[NotebookState, float]:
    """`conclude` in a saver process of a cluster run; with the seconds it took."""
    start = time.monotonic()
    return conclude(*args), time.monotonic() - start


class LocalPool:
    """This machine: a forkserver process pool, each worker with its leased sandbox uid (the default)."""

    def __init__(self, jobs_n: int):
        self.jobs_n = jobs_n
        self.pool = self._pool()

    def _pool(self) -> cf.ProcessPoolExecutor:
        ctx = multiprocessing.get_context("forkserver")
        # The fork server imports what every worker needs (torch among them: imported, no operation run, so no
        # thread exists yet) once; each worker is forked from it instead of importing them again.
        ctx.set_forkserver_preload(PRELOAD)
        return cf.ProcessPoolExecutor(max_workers=self.jobs_n, mp_context=ctx, initializer=init_worker)

    def describe(self) -> str:
        return f"{self.jobs_n} sandboxed worker(s)"

    def warm(self) -> None:
        for _ in range(self.jobs_n):
            self.pool.submit(warm)  # the workers import what they need while the parent plans

    def submit(self, job: Job, course: Course, opts: Options) -> cf.Future:
        assert job.run is not None
        return self.pool.submit(run_job, job.run, job.state, str(job.state_path), str(course.root), opts.feedback)

    def as_completed(self, futures: Mapping[cf.Future, Job]) -> Iterator[cf.Future]:
        return cf.as_completed(futures)

    def state(self, future: cf.Future, job: Job) -> NotebookState:
        return future.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def broken(self, exc: BaseException) -> bool:
        """Whether `exc` says a worker process died (a judge killed, e.g. out of memory): the pool is broken."""
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(exc, BrokenProcessPool)

    def restart(self) -> None:
        """A fresh pool in place of a broken one (its dead worker's uid lease is released with the process).

        The broken pool's other workers are killed and waited for first: concurrent.futures only sends them
        SIGTERM, which nbclient catches while a notebook runs (it shuts that kernel down and goes on), so such a
        worker would finish its job as "kernel died", save it, and unmount the job's folders while the retry of
        the same job runs in them."""
        old = self.pool
        workers = list((getattr(old, "_processes", None) or {}).values())
        old.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            if process.is_alive():
                process.kill()
        for process in workers:
            process.join(30)
        self.pool = self._pool()
