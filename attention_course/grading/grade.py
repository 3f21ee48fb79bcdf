"""`grade`: every submission of one assignment, scores into the gradebook: plan -> submit -> collect -> record ->
export -> summary.

The parent process (this module) plans each notebook (planner.py, each in a forked child with limits) and
submits it to the pool at once, so the workers start while the rest of the class is planned; it keeps the course
secret, and alone writes the gradebook and `grades.csv` (gradebook.py, export.py). A worker (worker.py on this
machine, a Dask worker via cluster.py) runs the notebook in a sandbox and its tests in the judge, scores it and
saves its state file `autograded/<student>/<assignment>/<notebook>.grading.json` atomically: a rerun reuses it
while nothing it depends on changed (idempotent, resumable), and rewrites the gradebook from it.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from attention_course.grading import term
from attention_course.grading.collect import reselect, submission_times
from attention_course.grading.course import Course
from attention_course.grading.export import export
from attention_course.grading.gradebook import record, register_assignment, roster
from attention_course.grading.ids import escape
from attention_course.grading.interfaces import Pool
from attention_course.grading.options import Options
from attention_course.grading.planner import Job, course_secret, plan_isolated
from attention_course.grading.records import GradingError, NotebookState, NotebookStatus
from attention_course.grading.saving import save
from attention_course.grading.scoring import finish, save_failed
from attention_course.grading.summary import Recovery, print_summary

JUDGE_DIED = "the grader's worker died while grading this notebook, twice (its judge was killed: out of memory?)"


def grade(course: Course, opts: Options, make_pool: Callable[[Path], Pool], out: TextIO = sys.stdout) -> int:
    """Grade `opts.assignment` with the pool `make_pool(scratch)` gives; 1 when a student had a grader error
    (retried next run), else 0. Raises GradingError when the run cannot start."""
    from attention_course.grading.sandbox import scratch_unmount

    sources = course.source_notebooks(opts.assignment)
    scratch = Path(tempfile.mkdtemp(prefix="grading-"))
    os.chmod(scratch, 0o755)
    pool = None
    try:
        pool = make_pool(scratch)  # first, so that a wrong cluster address fails at once and changes nothing
        try:
            register_assignment(course, course.db_url, opts.assignment, sources)
        except RuntimeError as exc:  # nbgrader refuses to change graded cells once submissions are recorded
            raise GradingError(
                f"cannot record {opts.assignment} in the gradebook: {exc}. The graded cells of the source changed "
                f"after grading began: restore them, or remove the assignment's submissions (`nbgrader db "
                f"assignment remove {opts.assignment} --force`) and grade again."
            ) from None
        return _ClassRun(course, opts, out, pool, scratch, sources).run()
    finally:
        if pool is not None:
            pool.close()
        if os.environ.get("GRADING_KEEP_SCRATCH"):  # for debugging the grader: kernels' logs and notebooks
            print(f"scratch kept in {scratch}", file=out)
        else:
            for dirpath, dirnames, _files in os.walk(scratch):  # left mounted by a worker that was killed
                for name in dirnames:
                    if os.path.ismount(os.path.join(dirpath, name)):
                        scratch_unmount(Path(dirpath, name))
            shutil.rmtree(scratch, ignore_errors=True)


class _ClassRun:
    def __init__(self, course: Course, opts: Options, out: TextIO, pool: Pool, scratch: Path, sources: list[Path]):
        self.course, self.opts, self.out, self.pool, self.scratch, self.sources = (
            course,
            opts,
            out,
            pool,
            scratch,
            sources,
        )
        self.done: dict[tuple[str, str], NotebookState] = {}
        self.recovery = Recovery()
        self.died_kernels: list[Job] = []
        self.planned: dict[int, NotebookState] = {}  # each job's state as planned, for a retry
        self.bar: Any = None
        self.gb: Any = None

    def run(self) -> int:
        from nbgrader.api import Gradebook

        course, opts = self.course, self.opts
        started = time.monotonic()
        refused: list[tuple[str, str]] = []
        students = roster(course, course.db_url, refused)
        # the term's files are checked before anything is graded; a changed due date or extension may make
        # another collected version the one to grade (the resubmission rule): it is put in submitted/ first
        self.zone = term.load(course, students, course.assignments()).zone
        for student in reselect(course, opts.assignment, term.chooser(course, opts.assignment, students)):
            print(f"{student}: the submission to grade changed (resubmission rule)", file=self.out)
        self.times = submission_times(course, opts.assignment)
        self.pool.warm()
        with Gradebook(course.db_url) as self.gb:
            plans, futures = self.plan_and_submit(students)
            todo = [job for job in plans if job.run]
            if todo:
                print(
                    f"grading {len(todo)} notebook(s) of {opts.assignment} with {self.pool.describe()}"
                    f" ({len(plans) - len(todo)} already graded or nothing to run)",
                    file=self.out,
                    flush=True,
                )
                if opts.progress:
                    from tqdm import tqdm

                    self.bar = tqdm(
                        total=len(todo), unit="nb", desc=opts.assignment, file=sys.stderr, dynamic_ncols=True
                    )
                self.recover(self.collect(futures))
                if self.bar:
                    self.bar.close()
        export(course, course.db_url, course.root / "grades.csv", students)
        seconds = time.monotonic() - started
        print_summary(course, opts.assignment, students, self.sources, self.done, seconds, len(todo), self.out)
        if self.recovery.line():
            print(self.recovery.line(), file=self.out)
        for name, why in refused:
            print(f"  REFUSED {escape(name, 60)}: {why}", file=self.out)
        return 1 if any(s.status == NotebookStatus.GRADER_ERROR for s in self.done.values()) else 0

    def plan_and_submit(self, students: list[str]) -> tuple[list[Job], dict[Any, Job]]:
        """Each notebook planned in a child with limits; submitted to the pool as soon as it is planned, or
        recorded at once when there is nothing to run."""
        cell_timeout = self.opts.cell_timeout or self.course.cell_timeout
        expected = {p.stem for p in self.sources}
        secret = course_secret(self.course)
        plans, futures = [], {}
        for student in students:
            for src in self.sources:
                job = plan_isolated(self.course, self.opts, student, src, expected, cell_timeout, self.scratch, secret)
                plans.append(job)
                if job.run:
                    self.planned[id(job)] = copy.deepcopy(job.state)
                    futures[self._submit(job)] = job
                else:
                    self.complete(job)
        return plans, futures

    def submit(self, batch: list[Job]) -> dict[Any, Job]:
        return {self._submit(job): job for job in batch}

    def _submit(self, job: Job) -> Any:
        """The job's future; when the pool broke before it could take the job (a worker died while the class was
        still being planned or submitted), a future that fails as the pool's running jobs do, so the job is
        recovered with them instead of stopping the class."""
        try:
            return self.pool.submit(job, self.course, self.opts)
        except Exception as exc:
            if not self.pool.broken(exc):
                raise
            failed: cf.Future = cf.Future()
            failed.set_exception(exc)
            return failed

    def collect(self, futures: dict[Any, Job]) -> list[Job]:
        """Each job's final state as it comes; the jobs that failed because the pool broke (none saved)."""
        lost = []
        for future in self.pool.as_completed(futures):
            job = futures[future]
            try:
                job.state = self.pool.state(future, job)
            except Exception as exc:
                if self.pool.broken(exc):
                    lost.append(job)
                    continue
                job.state = finish(job.state, None, f"worker failed: {type(exc).__name__}: {exc}")
            if job.state.died == "kernel died":
                self.died_kernels.append(job)
            self.complete(job)
            if self.bar:
                self.bar.update(1)
        return lost

    def recover(self, lost: list[Job]) -> None:
        """Retry the jobs of a broken pool (see summary.Recovery)."""
        recovery = self.recovery
        while lost:
            recovery.deaths += 1
            self.pool.restart()
            lost_ids = {id(j) for j in lost}
            again = [j for j in self.died_kernels if id(j) not in lost_ids]  # 'kernel died' while the grader failed
            self.died_kernels.clear()
            for job in again:
                job.state_path.unlink(missing_ok=True)
                job.state = copy.deepcopy(self.planned[id(job)])
            suspects = [j for j in lost if j.run and j.run.started.exists()]
            if not suspects:  # the pool broke with no notebook running: the grader itself fails
                for job in lost:
                    job.state = finish(job.state, None, "the grading worker pool failed")
                    self.complete(job)
                break
            recovery.regraded += len(lost) + len(again)
            suspect_ids = {id(j) for j in suspects}
            others = [j for j in lost if id(j) not in suspect_ids] + again
            for job in suspects:  # each alone: only a job that kills its worker again is a grader error
                assert job.run is not None
                job.run.started.unlink(missing_ok=True)
                if self.collect(self.submit([job])):
                    recovery.deaths += 1
                    recovery.culprits.append(f"{job.student}/{job.notebook}")
                    job.state = finish(job.state, None, JUDGE_DIED)
                    self.complete(job)
                    if self.bar:
                        self.bar.update(1)
                    self.pool.restart()
            for job in others:
                if job.run:
                    job.run.started.unlink(missing_ok=True)
            lost = self.collect(self.submit(others))

    def complete(self, job: Job) -> None:
        """Save a final state its worker did not save; then record the student once all their notebooks are done."""
        state = job.state
        if state.status != NotebookStatus.GRADER_ERROR and not state.reused and not state.saved:
            try:
                save(self.course, state, job.state_path, None, self.opts.feedback)
            except Exception as exc:  # this student's grader error (nothing saved: retried next run)
                state = job.state = save_failed(state, f"saving the result failed: {type(exc).__name__}: {exc}")
        state.saved = False
        self.done[job.student, job.notebook] = state
        states = {p.stem: self.done.get((job.student, p.stem)) for p in self.sources}
        if any(s is None for s in states.values()):
            return  # the student's other notebooks are still running
        if all(s.status == NotebookStatus.NO_SUBMISSION for s in states.values() if s):
            self.gb.update_or_create_student(job.student)
            return
        ts = self.times.get(job.student)  # from `make collect`, never from a file the student uploaded
        if ts:
            try:
                ts = str(term.to_utc(ts, self.zone))
            except ValueError:
                ts = None  # export's term.apply says which time is wrong
        record(self.gb, self.opts.assignment, job.student, {n: s.to_json() for n, s in states.items() if s}, ts)
