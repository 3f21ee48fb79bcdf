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


def test_times_and_zones():
    utc = dt.datetime(2027, 1, 10, 16, 0)
    for text in (
        "2027-01-10 17:00 Europe/Berlin",
        "2027-01-10 17:00 +0100",
        "2027-01-10 17:00:00 +01:00",
        "2027-01-10T17:00:00+01:00",
        "2027-01-10 11:00 -0500",
        "2027-01-10 16:00 UTC",
    ):
        assert term.to_utc(text) == utc, text
    assert term.to_utc("2027-01-10 17:00", "Europe/Berlin") == utc  # the course's zone
    assert term.to_utc("2027-07-10 18:00", "Europe/Berlin") == dt.datetime(2027, 7, 10, 16, 0)  # summer time


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


def test_a_submission_placed_by_hand_is_kept_not_lost(tmp_path):
    course = make_course(tmp_path)
    by_hand = course.submitted / "ann" / A / NB
    by_hand.parent.mkdir(parents=True)
    by_hand.write_text("emailed to the instructor")
    do_collect(course, tmp_path, {"ann": ((2027, 1, 10, 12, 0, 0), "from canvas")})
    assert by_hand.read_text() == "from canvas"
    kept = course.root / ".collected" / A / "ann" / "by-hand-1" / NB
    assert kept.read_text() == "emailed to the instructor"
    assert versions(course, A, "ann") == ["2027-01-10 12:00:00"]  # never picked by the rule


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


def test_an_extension_needs_a_due_date(tmp_path):
    course = make_course(tmp_path)
    score(course, {"ann": 5})
    write(course, "extensions.csv", f"student,assignment,hours\nann,{A},24\n")
    with pytest.raises(term.TermError, match=f"^extensions.csv: extensions for {A} but it has no due date"):
        rows(course)  # nbgrader itself would fail adding an extension to no due date


def test_the_cli_says_it_in_one_line_and_writes_the_lms_files(tmp_path):
    course = make_course(tmp_path)
    do_collect(course, tmp_path, {"ann": CLASS["ann"]})
    score(course, {"ann": 5})
    write(course, "extensions.csv", f"student,assignment,hours\nzed,{A},24\n")

    def cli(*args):
        cmd = [sys.executable, "-m", "attention_course.grading", "--course", str(course.root), "export", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    proc = cli("--assignment", A)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: extensions.csv line 2: unknown student 'zed' (not in the gradebook nor in submitted/)"
    ]
    write(course, "extensions.csv", f"student,assignment,hours\nann,{A},24\n")
    write(course, "duedates.csv", f"assignment,duedate\n{A},2027-01-10 17:00 UTC\n")
    proc = cli("--assignment", A, "--lms", "canvas,questions")
    assert proc.returncode == 0, proc.stderr
    assert (course.root / f"grades-canvas-{A}.csv").read_text().splitlines()[1] == "ann,100,,,,5"
    assert (course.root / f"grades-questions-{A}.csv").exists()
    assert not (course.root / f"grades-moodle-{A}.csv").exists()
    shutil.rmtree(course.root)


# The LMS grade files. Column rules, from each LMS's documented import format (attention_course/grading/README.md):
# Canvas: a header row whose first five columns are Student, ID, SIS User ID, SIS Login ID, Section (the identity
# columns), then assignment columns named "Name (id)" (or a bare name: a new assignment); a row is matched by its
# Canvas user ID; scores are numbers. Moodle: one identifier column Moodle can map (email address, ID number,
# username) with unique, non-empty values, and a grade column of numbers; any other columns are ignored.


def canvas_rules(text: str, max_score: float) -> list[str]:
    problems = []
    table = list(csv.reader(text.splitlines()))
    header, body = table[0], table[1:]
    if header[:5] != ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]:
        problems.append(f"identity columns {header[:5]}")
    import re

    if not header[5:] or not all(re.fullmatch(r".+ \(\d+\)", h) for h in header[5:]):
        problems.append(f"assignment columns must be 'Name (id)': {header[5:]}")
    ids = [r[1] for r in body]
    if any(not i.isdigit() for i in ids) or len(set(ids)) != len(ids):
        problems.append(f"Canvas user ids must be unique numbers: {ids}")
    for r in body:
        if len(r) != len(header):
            problems.append(f"ragged row {r}")
        elif any(not 0 <= float(v) <= max_score for v in r[5:]):
            problems.append(f"score out of range in {r}")
        if r[0][:1] in "=+-@":
            problems.append(f"a formula in {r}")
    return problems


def moodle_rules(text: str, max_score: float) -> list[str]:
    problems = []
    table = list(csv.reader(text.splitlines()))
    header, body = table[0], table[1:]
    idents = [h for h in header if h in ("Email address", "ID number", "Username")]
    if len(idents) != 1:
        return [f"one identifier column needed, found {idents}"]
    values = [r[header.index(idents[0])] for r in body]
    if any(not v for v in values) or len(set(values)) != len(values):
        problems.append(f"identifiers must be unique and non-empty: {values}")
    if idents[0] == "Email address" and any("@" not in v for v in values):
        problems.append("not an email address")
    grades = [h for h in header if h not in ("First name", "Last name", *idents)]
    if len(grades) != 1:
        problems.append(f"one grade column expected: {grades}")
    elif any(not 0 <= float(r[header.index(grades[0])]) <= max_score for r in body):
        problems.append("grade out of range")
    return problems


def test_lms_files_follow_each_lms_column_rules(tmp_path):
    from nbgrader.api import Gradebook

    from attention_course.grading import lms
    from attention_course.grading.export import grade_rows

    course = make_course(tmp_path, '\nc.LMSExport.canvas_assignment_ids = {"hw1": 4711}\n')
    with Gradebook(course.db_url) as gb:
        gb.add_student("ann", first_name="Ann", last_name="Lee", email="ann@uni.example")
        gb.add_student("bob", first_name="Bob", last_name="=cmd", email="bob@uni.example")
        gb.add_student("dee", email="", lms_user_id="777")  # never collected; the roster gives her Canvas id
        gb.add_student("eve", email="eve@uni.example")  # never collected, no Canvas id
    do_collect(course, tmp_path, {s: CLASS[s] for s in ("ann", "bob", "cy")})  # Canvas user ids 100, 101, 102
    score(course, {"ann": 8, "bob": 8, "cy": 8})
    write(course, "duedates.csv", f"assignment,duedate\n{A},2027-01-10 17:00 UTC\n")
    rows = grade_rows(course, course.db_url)
    out = lms.files(course, A)

    assert lms.canvas(course, course.db_url, A, rows, out["canvas"]) == ["eve"]
    text = out["canvas"].read_text()
    assert canvas_rules(text, 10) == []
    table = list(csv.DictReader(text.splitlines()))
    assert [(r["Student"], r["ID"], r["hw1 (4711)"]) for r in table] == [
        ("Lee, Ann", "100", "8"),
        ("'=cmd, Bob", "101", "6.4"),  # the score after the late penalty
        ("cy", "102", "6.4"),
        ("dee", "777", "0"),
    ]
    assert lms.moodle(course, course.db_url, A, rows, out["moodle"]) == ["cy", "dee"]  # no email
    text = out["moodle"].read_text()
    assert moodle_rules(text, 10) == []
    assert [(r["Email address"], r[A]) for r in csv.DictReader(text.splitlines())] == [
        ("ann@uni.example", "8"),
        ("bob@uni.example", "6.4"),
        ("eve@uni.example", "0"),
    ]
    assert lms.per_question(course, course.db_url, A, rows, out["questions"]) == 2
    table = list(csv.DictReader(out["questions"].read_text().splitlines()))
    assert [(r["student_id"], r["q1"], r["q2"], r["score"]) for r in table][:2] == [
        ("ann", "5", "3", "8"),
        ("bob", "5", "3", "6.4"),
    ]

    # the rules catch what an LMS would refuse
    assert canvas_rules("Name,ID,SIS User ID,SIS Login ID,Section,hw1\nann,x,,,,3\n", 10)
    assert moodle_rules("First name,Last name,hw1\nAnn,Lee,3\n", 10)
    assert moodle_rules("Email address,hw1\nann@x,3\nann@x,4\n", 10)
