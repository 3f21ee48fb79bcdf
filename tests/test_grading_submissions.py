"""Every simulated submission (tests/submissions/) scores the same under `make grade` as under plain nbgrader.

Plain `nbgrader autograde` runs the test cells in the student's kernel (tests/test_autograde_class.py); `make
grade` runs them in the trusted judge, outside the sandboxed kernel, with secret inputs in the hidden blocks.
Both must give every test cell of every simulated student the same points: the judge changes where tests run,
not what they grade. One `make grade` run per assignment, one after the other (two grading runs at once on one
machine would compete for the sandboxes' user ids).
"""

from __future__ import annotations

import os

import pytest
from helpers import ASSIGNMENTS, gradebook_scores, make_grade, write_class

from attention_course.grading.sandbox import available

SANDBOX = available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}"),
]


@pytest.fixture(scope="module")
def judged_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("judged")
    scores, summaries = {}, {}
    for assignment in ASSIGNMENTS:
        course = base / assignment
        students = write_class(assignment, course)
        proc = make_grade(course, assignment, ok=(0, 1))
        summaries[assignment] = proc.stdout
        scores.update(gradebook_scores(assignment, course, students))
    return scores, summaries


def test_no_grader_errors(judged_class):
    _, summaries = judged_class
    for out in summaries.values():
        assert "grader error" not in out, out[-4000:]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_same_points_as_plain_nbgrader(judged_class, graded_class, assignment):
    judged, _ = judged_class
    students = sorted(s for a, s in judged if a == assignment)
    assert len(students) >= 10
    different = [
        f"{student}: make grade {judged[assignment, student]} vs nbgrader {graded_class[assignment, student]}"
        for student in students
        if judged[assignment, student] != graded_class[assignment, student]
    ]
    assert not different, "\n".join(different)
