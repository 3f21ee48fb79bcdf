"""The two seams of the grading path, as `typing.Protocol`s: a `Pool` runs planned jobs (worker.LocalPool on this
machine, cluster.DaskPool on a Dask cluster); a `JudgeLink` is how the runner reaches the judge for a test cell
(runner.LocalLink: the judge in the worker; dask_worker.RemoteLink: relayed to the instructor's judge service)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from attention_course.grading.course import Course
    from attention_course.grading.options import Options
    from attention_course.grading.planner import Job
    from attention_course.grading.records import NotebookState


class Pool(Protocol):
    def describe(self) -> str:
        """What grades, in words (the run's first line)."""

    def warm(self) -> None:
        """Start importing what the workers need, while the parent plans."""

    def submit(self, job: Job, course: Course, opts: Options) -> Any:
        """Start one planned job; a future for `as_completed` and `state`."""

    def as_completed(self, futures: Mapping[Any, Job]) -> Iterator[Any]:
        """The futures (future -> its job), each once its job is done."""

    def state(self, future: Any, job: Job) -> NotebookState:
        """The job's final state (saved unless a grader error); raises what the worker raised."""

    def broken(self, exc: BaseException) -> bool:
        """Whether `exc` says the pool broke (a worker died): its jobs are retried (grade._Recovery)."""

    def restart(self) -> None:
        """A fresh pool in place of a broken one."""

    def close(self) -> None: ...


class JudgeLink(Protocol):
    wait_ok: bool  # after the judge's result, wait a little longer for the kernel's turn to end

    def locked(self, index: int, source: str) -> None:
        """A locked set-up cell of the source notebook: the judge runs it too."""

    def test(self, index: int, gid: str, source: str, timeout: int) -> dict[str, Any]:
        """Judge one test cell; the judge's result (status, ename, evalue, stdout) or {"status": "judged"}."""

    def abandon(self) -> None:
        """The kernel's turn ended: stop waiting for it."""
