"""Helpers the grading tests share: run `make grade` on a course copy, read its grades.csv."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

from conftest import ROOT


def make_grade(
    course: Path,
    assignment: str,
    flags: str = "--no-progress",
    *,
    jobs: int = 2,
    env: dict | None = None,
    timeout: float = 3600,
    ok: tuple[int, ...] | None = (0,),
) -> subprocess.CompletedProcess:
    """`make grade ASSIGNMENT=... COURSE=... JOBS=... GRADE_FLAGS=...` as an instructor types it; stdout and
    stderr together. An exit status outside `ok` fails the test (0: all graded; 1: some not gradable; None:
    any status, for the caller to check)."""
    cmd = [
        "make", "--no-print-directory", "-C", str(ROOT), "grade", f"ASSIGNMENT={assignment}",
        f"COURSE={course}", f"JOBS={jobs}", f"GRADE_FLAGS={flags}",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if ok is not None:
        assert proc.returncode in ok, f"make grade exited {proc.returncode}:\n{proc.stdout[-6000:]}"
    return proc


def grades_rows(course: Path) -> list[dict]:
    """The rows of the course's grades.csv (one per roster student of the last graded assignment)."""
    with open(course / "grades.csv", newline="") as fh:
        return list(csv.DictReader(fh))
