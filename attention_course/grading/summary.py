"""The run's report: one line per student (score, status, reason), the totals, and what the run survived."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from attention_course.grading.course import Course
from attention_course.grading.ids import escape
from attention_course.grading.records import NotebookState, NotebookStatus, overall, reason_line


def print_summary(
    course: Course,
    assignment: str,
    students: list[str],
    sources: list[Path],
    states: Mapping[tuple[str, str], NotebookState],
    seconds: float,
    executed: int,
    out: TextIO,
) -> None:
    counts: dict[str, int] = {}
    print(f"\n{assignment}: {len(students)} student(s), {executed} notebook(s) executed in {seconds:.0f} s", file=out)
    width = max([len(s) for s in students] + [7])
    for student in students:
        sts = [states[student, p.stem] for p in sources]
        score = sum(s.score for s in sts)
        max_score = sum(s.max_score for s in sts)
        status = overall([s.status for s in sts])
        kind = "graded" if status == NotebookStatus.GRADED else "failed"
        counts[kind] = counts.get(kind, 0) + 1
        reason = escape(reason_line(s.to_json() for s in sts), 600)
        print(f"  {student:<{width}}  {score:g}/{max_score:g}  {status:<13} {reason}", file=out)
    print(
        f"graded: {counts.get('graded', 0)}, failed (nothing gradable or grading refused): "
        f"{counts.get('failed', 0)}; scores in {course.db_url.split('@')[-1]}, grades.csv, "
        f"feedback in {course.feedback.relative_to(course.root)}/",
        file=out,
    )
    kernels = kernel_line([states[student, p.stem] for student in students for p in sources])
    if kernels:
        print(kernels, file=out)


def kernel_line(states: list[NotebookState]) -> str:
    """Which path started the kernels of the notebooks run now: warm (forked from a template) or cold, and why."""
    paths: dict[str, int] = {}
    for state in states:
        if state.kernel and not state.reused:
            paths[state.kernel] = paths.get(state.kernel, 0) + 1
    if not paths:
        return ""
    warm = paths.pop("warm", 0)
    cold = "; ".join(f"{n} {escape(why, 200)}" for why, n in sorted(paths.items()))
    return f"kernels: {warm} warm (forked from each worker's template)" + (f", {cold}" if cold else "")


class Recovery:
    """What a run does when a worker dies (a judge killed by the OOM killer, say): the pool breaks and every job
    in it fails at once. None of those results is saved; the pool is recreated and each job retried once: those
    that had started (suspects) one at a time, so a job that kills its worker again is that student's grader
    error alone (not saved, so the next run retries it), and the rest together. A notebook saved in this run as
    'kernel died' is not believed either (the host may have killed that kernel, not its student): it is regraded
    too. `deaths` and `culprits` go into the run's summary."""

    def __init__(self) -> None:
        self.deaths = 0
        self.culprits: list[str] = []
        self.regraded = 0

    def line(self) -> str:
        if not self.deaths:
            return ""
        text = (
            f"grader: a grading worker died {self.deaths} time(s) (a judge was killed); the pool was recreated and "
            f"{self.regraded} notebook(s) regraded"
        )
        if self.culprits:
            text += "; grader error (retried next run): " + ", ".join(self.culprits[:10])
        return text
