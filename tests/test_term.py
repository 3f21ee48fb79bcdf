"""An instructor's term without kernels: due dates (duedates.csv), extensions (extensions.csv), late penalties
(nbgrader's LateSubmissionPlugin chosen in nbgrader_config.py), resubmissions, on a gradebook built with
nbgrader's API in a temporary course. Submission times come from `collect` (the LMS zip's file times)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from helpers import ROOT

from attention_course.grading import late, term
from attention_course.grading.collect import collect, reselect, submission_times, versions
from attention_course.grading.course import Course
from attention_course.grading.export import export

A = "hw1"
NB = f"{A}.ipynb"


_TEMPLATE: list = []  # a gradebook with the assignment recorded, made once (creating one takes seconds)


def make_course(tmp_path, extra_config: str = "") -> Course:
    """A course with one assignment (two auto-graded cells, 5 points each) and nbgrader_config.py of the repo."""
    from nbgrader.api import Gradebook

    root = tmp_path / "course"
    (root / "solutions" / A).mkdir(parents=True)
    (root / "solutions" / A / NB).write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4}))
    (root / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text() + extra_config)
    course = Course.load(root)
    if not _TEMPLATE:
        with Gradebook(course.db_url) as gb:
            gb.add_assignment(A)
            gb.add_notebook(A, A)
            for cell in ("q1", "q2"):
                gb.add_grade_cell(cell, A, A, max_score=5, cell_type="code")
        _TEMPLATE.append((root / "gradebook.db").read_bytes())
    else:
        (root / "gradebook.db").write_bytes(_TEMPLATE[0])
    return course


def canvas_zip(path, submissions: dict[str, tuple[tuple[int, ...], str]]):
    """student -> (the file's time in the zip, the notebook's text): a Canvas bulk download."""
    with zipfile.ZipFile(path, "w") as zf:
        for i, (student, (when, text)) in enumerate(submissions.items()):
            zf.writestr(zipfile.ZipInfo(f"{student}_{100 + i}_{900 + i}_{NB}", date_time=when), text)
            # a student's own claim about the time is a file like any other, never believed
            zf.writestr(zipfile.ZipInfo(f"{student}_{100 + i}_{900 + i}_timestamp.txt", date_time=when), "2000-01-01")
    return path


def do_collect(course, tmp_path, submissions, name="dl.zip"):
    from attention_course.grading.gradebook import roster

    choose = term.chooser(course, A, roster(course, course.db_url))
    return collect(course, A, canvas_zip(tmp_path / name, submissions), choose=choose)


def score(course, scores: dict[str, float]):
    """Record each student's raw score (split over the two cells) as `make grade` would."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.db_url) as gb:
        for student, points in scores.items():
            gb.update_or_create_student(student)
            try:
                sub = gb.find_submission(A, student)
            except MissingEntry:
                sub = gb.add_submission(A, student)
            for grade, part in zip(sub.notebooks[0].grades, (min(points, 5.0), max(points - 5.0, 0.0))):
                grade.auto_score = part
        gb.db.commit()


def rows(course) -> dict[str, dict[str, str]]:
    dest = course.root / "grades.csv"
    export(course, course.db_url, dest)
    with open(dest, newline="") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}


def write(course, name, text):
    (course.root / name).write_text(text)


CLASS = {
    "ann": ((2027, 1, 10, 16, 0, 0), "ann"),  # an hour early
    "bob": ((2027, 1, 11, 18, 0, 0), "bob"),  # 25 h late: two started days
    "cy": ((2027, 1, 11, 18, 0, 0), "cy"),  # 25 h late, with a 24 h extension: 1 h late
    "dee": ((2027, 1, 10, 17, 0, 0), "dee"),  # exactly at the deadline: on time
}


def test_penalties_follow_due_dates_extensions_and_collected_times(tmp_path):
    course = make_course(tmp_path)
    do_collect(course, tmp_path, CLASS)
    score(course, {"ann": 8, "bob": 8, "cy": 8, "dee": 8})
    write(course, "duedates.csv", f"assignment,duedate\n{A},2027-01-10 17:00 UTC\n")
    write(course, "extensions.csv", f"student,assignment,hours\ncy,{A},24\n")
    before = rows(course)
    got = {s: tuple(float(r[k]) for k in ("raw_score", "late_submission_penalty", "score")) for s, r in before.items()}
    assert got == {
        "ann": (8.0, 0.0, 8.0),
        "bob": (8.0, pytest.approx(1.6), pytest.approx(6.4)),
        "cy": (8.0, pytest.approx(0.8), pytest.approx(7.2)),
        "dee": (8.0, 0.0, 8.0),
    }
    assert before["bob"]["timestamp"] == "2027-01-11 18:00:00"  # the zip's time, not timestamp.txt's 2000
    assert before["bob"]["duedate"] == "2027-01-10 17:00:00"
    assert [before[s]["hours_late"] for s in ("bob", "cy", "ann")] == ["25.00", "1.00", ""]
    assert before["cy"]["extension_hours"] == "24"

    # one extension changed, re-exported: that student's row alone changes
    write(course, "extensions.csv", f"student,assignment,hours\ncy,{A},26\n")
    after = rows(course)
    assert {s for s in before if before[s] != after[s]} == {"cy"}
    assert (after["cy"]["late_submission_penalty"], after["cy"]["score"]) == ("0.0", "8.0")

    # the file is the truth: cy's line removed, no extension
    write(course, "extensions.csv", "student,assignment,hours\n")
    assert float(rows(course)["cy"]["late_submission_penalty"]) == pytest.approx(1.6)
    # and the gradebook holds it, for formgrader and `nbgrader export`
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        assert gb.find_assignment(A).duedate == dt.datetime(2027, 1, 10, 17)
        assert gb.find_submission(A, "bob").late_submission_penalty == pytest.approx(1.6)


def test_zero_when_late_and_the_courses_zone(tmp_path):
    course = make_course(
        tmp_path,
        '\nc.AssignLatePenalties.plugin_class = "attention_course.grading.late.ZeroWhenLate"\n'
        'c.Exchange.timezone = "Europe/Berlin"\n',
    )
    do_collect(course, tmp_path, {"ann": ((2027, 1, 10, 17, 30, 0), "ann"), "bob": ((2027, 1, 10, 18, 30, 0), "b")})
    score(course, {"ann": 9, "bob": 9})
    # 17:00 UTC is 18:00 in Berlin (winter): ann (17:30 Berlin) is on time, bob (18:30 Berlin) is late
    write(course, "duedates.csv", f"assignment,duedate\n{A},2027-01-10 17:00 UTC\n")
    got = rows(course)
    assert (got["ann"]["score"], got["bob"]["late_submission_penalty"], got["bob"]["score"]) == ("9.0", "9.0", "0.0")
    assert got["bob"]["timestamp"] == "2027-01-10 17:30:00"  # stored in UTC, as nbgrader does
    # a due date without a zone is in the course's zone: 18:30 Berlin is then on time for bob
    write(course, "duedates.csv", f"assignment,duedate\n{A},2027-01-10 18:30\n")
    assert rows(course)["bob"]["score"] == "9.0"


def test_the_two_policies():
    per_day = late.FractionPerDay(fraction=0.25)
    assert [per_day.late_submission_penalty("s", 8.0, s) for s in (0, 1, 86400, 86401, 3 * 86400, 9 * 86400)] == [
        0.0,
        2.0,
        2.0,
        4.0,
        6.0,
        8.0,
    ]
    zero = late.ZeroWhenLate()
    assert (zero.late_submission_penalty("s", 7.0, 0), zero.late_submission_penalty("s", 7.0, 1)) == (0.0, 7.0)


def test_the_resubmission_rule():
    t = [dt.datetime(2027, 1, d) for d in (1, 5, 9)]
    assert term.pick(t, dt.datetime(2027, 1, 6)) == t[1]  # the latest before the deadline
    assert term.pick(t, dt.datetime(2027, 1, 5)) == t[1]  # at the deadline is on time
    assert term.pick(t, dt.datetime(2026, 12, 1)) == t[2]  # all late: the latest
    assert term.pick(t, None) == t[2]
    assert term.pick([], None) is None


def test_resubmissions_are_kept_and_the_rule_picks_the_graded_one(tmp_path):
    course = make_course(tmp_path)
    write(course, "duedates.csv", f"assignment,duedate\n{A},2027-01-10 17:00\n")
    do_collect(course, tmp_path, {"ann": ((2027, 1, 10, 12, 0, 0), "first"), "bob": ((2027, 1, 9, 0, 0, 0), "b")})
    report = do_collect(course, tmp_path, {"ann": ((2027, 1, 11, 9, 0, 0), "second")}, name="later.zip")
    nb = course.submitted / "ann" / A / NB
    assert nb.read_text() == "first"  # the late resubmission is kept, not graded
    assert versions(course, A, "ann") == ["2027-01-10 12:00:00", "2027-01-11 09:00:00"]
    assert any("graded: the one of 2027-01-10 12:00:00" in n for n in report.notes)
    assert submission_times(course, A)["ann"] == "2027-01-10 12:00:00"
    score(course, {"ann": 10, "bob": 10})
    assert float(rows(course)["ann"]["late_submission_penalty"]) == 0.0

    # an extension makes the resubmission on time: export says a regrade is due, `make grade` reselects it
    write(course, "extensions.csv", f"student,assignment,hours\nann,{A},48\n")
    assert "now the one to grade" in rows(course)["ann"]["reason"]
    assert reselect(course, A, term.chooser(course, A, ["ann", "bob"])) == ["ann"]
    assert nb.read_text() == "second"
    assert submission_times(course, A)["ann"] == "2027-01-11 09:00:00"
    assert "now the one to grade" not in rows(course)["ann"]["reason"]
    assert reselect(course, A, term.chooser(course, A, ["ann", "bob"])) == []  # idempotent


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("extensions.csv", f"student,assignment,hours\nzed,{A},24\n", "extensions.csv line 2: unknown student 'zed'"),
        ("extensions.csv", "student,assignment,hours\nann,hw9,24\n", "extensions.csv line 2: unknown assignment 'hw9'"),
        ("extensions.csv", f"student,assignment,hours\nann,{A},a day\n", "hours must be a number of hours"),
        ("extensions.csv", f"student,hours\nann,{A}\n", "the header must be student,assignment,hours"),
        ("duedates.csv", f"assignment,duedate\n{A},next friday\n", "duedates.csv line 2: not a date and time"),
        ("duedates.csv", f"assignment,duedate\n{A},2027-01-10 17:00 Mars/Olympus\n", "unknown time zone"),
    ],
)
def test_an_instructors_mistake_is_one_line(tmp_path, name, text, message):
    course = make_course(tmp_path)
    write(course, name, text)
    with pytest.raises(term.TermError) as err:
        term.load(course, ["ann"], [A])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_cli_says_it_in_one_line(tmp_path):
    course = make_course(tmp_path)
    score(course, {"ann": 5})
    write(course, "extensions.csv", f"student,assignment,hours\nzed,{A},24\n")
    proc = subprocess.run(
        [sys.executable, "-m", "attention_course.grading", "--course", str(course.root), "export"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: extensions.csv line 2: unknown student 'zed' (not in the gradebook nor in submitted/)"
    ]
    shutil.rmtree(course.root)
