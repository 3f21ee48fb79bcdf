"""`make grade` end to end on the escapes of tests/adversarial/escapes.py (issue 18, class 2): ways around the
in-kernel checks either fail the check (the exact score) or are flagged for review; honest references keep full
marks. One `make grade` run per assignment involved (JOBS=2), in a private copy of the course."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import ROOT, copy_course, grades_rows, make_grade

sys.path.insert(0, str(Path(__file__).parent))
from adversarial.escapes import FLAGGED, build

from attention_course.grading.sandbox import available

SANDBOX = available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}"),
]
GRADE_FLAGS = "--cell-timeout 60 --no-progress"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("escapes"))
    cases = build(course, ROOT)
    rows, outputs = {}, {}
    for assignment in sorted({c.assignment for c in cases.values()}):
        proc = make_grade(course, assignment, GRADE_FLAGS, timeout=1800)
        outputs[assignment] = proc.stdout
        rows.update({(r["student_id"], r["assignment"]): r for r in grades_rows(course)})
    return cases, rows, outputs


def test_every_escape_fails_its_check_or_is_flagged(graded):
    cases, rows, _ = graded
    wrong = []
    for student, case in cases.items():
        row = rows[(student, case.assignment)]
        got = (float(row["score"]), row["status"])
        flagged = FLAGGED in row["reason"]
        if got != (case.score, case.status) or case.reason.lower() not in row["reason"].lower():
            wrong.append(f"{student} ({case.assignment}): got {got} {row['reason']!r}, expected {case}")
        elif student.startswith("escape-honest") and flagged:
            wrong.append(f"{student}: an honest reference was flagged: {row['reason']!r}")
    assert not wrong, "\n".join(wrong)


def test_no_escape_is_silent(graded):
    """The rule itself: every hostile notebook lost the checked points or was flagged (or both)."""
    cases, rows, _ = graded
    full = {"attention-pooling": 10, "efficient-attention": 10, "multi-head": 12}
    for student, case in cases.items():
        if student.startswith("escape-honest"):
            continue
        row = rows[(student, case.assignment)]
        assert float(row["score"]) < full[case.assignment] or FLAGGED in row["reason"], (student, row)


def test_the_memory_bound_is_read_from_the_sandbox(graded):
    """The numpy escape makes no torch tensor of the full score matrix: the cgroup saw it and said so (its test
    fails); the scan flags its numpy as well, a second line that does not depend on the memory it grows by."""
    _, rows, _ = graded
    reason = rows[("escape-full-scores-numpy", "efficient-attention")]["reason"]
    assert "memory rose by" in reason and FLAGGED in reason, reason
