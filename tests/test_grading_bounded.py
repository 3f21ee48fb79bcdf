"""A class whose hostile students go after the trusted side's resources, graded with `make grade` (JOBS=2,
sandboxed, end to end; see tests/adversarial/bounded.py): a huge request to a grader's stand-in is refused (the
test fails, the judge goes on), the IPC folder is sized, and a judge that dies is its own student's grader error
only: every honest classmate gets full marks in the same run, the summary says what happened, and a rerun
retries that student (and only that student).
"""

from __future__ import annotations

import csv
import os
import subprocess

import pytest
from adversarial.bounded import ASSIGNMENT, DEATH_MARKER, HONEST, build
from helpers import ROOT, copy_course, make_grade

from attention_course.grading.grade import JUDGE_DIED
from attention_course.grading.sandbox import available

SANDBOX = available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}"),
]


def _grade(course) -> subprocess.CompletedProcess:
    flags = "--no-progress --memory 2 --cell-timeout 90"
    env = {"ATTENTION_COURSE_TEST_JUDGE_DEATH": DEATH_MARKER}
    return make_grade(course, ASSIGNMENT, flags, env=env, timeout=2400, ok=None)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("bounded"))
    expected = build(course, ROOT)
    first = _grade(course)
    with open(course / "grades.csv", newline="") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    states = {
        student: (course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.grading.json").exists()
        for student in expected
    }
    second = _grade(course)
    return {"course": course, "expected": expected, "first": first, "rows": rows, "states": states, "second": second}


def _line(out: str, student: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"  {student} "))


def test_every_honest_classmate_gets_full_marks_when_a_judge_dies(graded):
    out = graded["first"].stdout
    for student in HONEST:
        assert float(graded["rows"][student]["score"]) == 10, (student, graded["rows"][student], out[-3000:])
        assert graded["rows"][student]["status"] == "graded"
        assert _line(out, student).split()[1:3] == ["10/10", "graded"], _line(out, student)
    assert "kernel died" not in out, out[-3000:]  # no classmate's kernel was lost with the judge, nor any kernel


def test_the_student_whose_judge_died_is_a_grader_error_with_the_reason(graded):
    out = graded["first"].stdout
    line = _line(out, "judge-killer")
    assert "grader error" in line and JUDGE_DIED[:40] in line, line
    assert not graded["states"]["judge-killer"], "a grader error is not saved: the next run retries it"
    assert float(graded["rows"]["judge-killer"]["score"] or 0) == 0
    summary = [line for line in out.splitlines() if line.startswith("grader: a grading worker died")]
    assert len(summary) == 1 and "judge-killer/self-attention" in summary[0], out[-3000:]
    assert graded["first"].returncode != 0  # a grader error is the grader's failure, not a score


def test_huge_requests_are_refused_and_the_ipc_folder_is_sized(graded):
    rows = graded["rows"]
    assert float(rows["huge-request"]["score"]) == graded["expected"]["huge-request"], rows["huge-request"]
    assert "refused" in rows["huge-request"]["reason"], rows["huge-request"]
    assert "PositionalEncoding_adds_P" in rows["huge-request"]["reason"]
    assert float(rows["ipc-fill"]["score"]) == graded["expected"]["ipc-fill"], rows["ipc-fill"]  # the write failed


def test_a_rerun_retries_the_grader_error_and_reuses_the_rest(graded):
    out = graded["second"].stdout
    assert "grading 1 notebook(s)" in out, out[-3000:]  # judge-killer alone is executed again
    assert "grader error" in _line(out, "judge-killer")
    for student in HONEST:
        assert _line(out, student).split()[1] == "10/10", _line(out, student)
