"""A class run that no file, no student id and no second run can break (sandboxed, end to end).

Two `make grade` runs on two copies of one class start at the same moment on this machine (sandbox user ids
are leased, so neither can kill the other's kernels). The class holds, besides correct students: attacks on
the per-sandbox limits (memory held by forked children, writable space in the folder and in /tmp), whose
answers are right only if the attack worked; folders whose names are not ids or are links; a 60-character id;
a roster student whose name is a spreadsheet formula; an uploaded `timestamp.txt`.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time

import pytest
from helpers import ROOT, copy_course

from attention_course import notebooks as nbt
from attention_course.grading.sandbox import available

SANDBOX = available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}"),
]
ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"
LONG_ID = "a-student-id-of-sixty-characters-" + "x" * 27

MEMORY_ATTACK = """import os, select, time
def _held():
    kids, (r, w) = [], os.pipe()
    for _ in range(3):  # 3 x 900 MB in forked children: each under any per-process limit, together over 2 GiB
        pid = os.fork()
        if pid == 0:
            hold = b"x" * (900 * 2**20)
            os.write(w, b"1")  # held: the parent counts the children that got their memory
            time.sleep(300)
            os._exit(0)
        kids.append(pid)
    got, deadline = 0, time.monotonic() + 120  # however loaded the machine, until each holds its memory or died
    while got < 3 and time.monotonic() < deadline:
        if any(os.waitpid(pid, os.WNOHANG) != (0, 0) for pid in kids):
            return False
        if select.select([r], [], [], 0.5)[0]:
            got += len(os.read(r, 3))
    time.sleep(2)
    return got == 3 and all(os.waitpid(pid, os.WNOHANG) == (0, 0) for pid in kids)
if _held():
%s
else:
    def softmax(x, dim=-1):
        return x
"""

FILL = """def _filled(where):
    try:
        for i in range(6):  # 6 x 255 MiB: more than the 1 GiB of writable space
            with open(f"{where}/big{i}", "wb") as fh:
                fh.write(b"z" * (255 * 2**20))
        return True
    except OSError:
        return False
if _filled(%r):
%s
else:
    def dot_product_scores(queries, keys):
        return queries @ keys.T
"""


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def build(course):
    release = nbt.read(ROOT / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB))

    def put(student, answers=None, name=NB):
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        nbt.write(nbt.with_answers(release, {**ref, **(answers or {})}), folder / name)
        return folder

    put("ref0")
    (put("ref1") / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC")
    put(LONG_ID)
    put("memory-attack", {"softmax": MEMORY_ATTACK % _indent(ref["softmax"])})
    put("folder-fill", {"dot_product_scores": FILL % (".", _indent(ref["dot_product_scores"]))})
    put("tmp-fill", {"dot_product_scores": FILL % ("/tmp", _indent(ref["dot_product_scores"]))})
    for student, data in {
        "deep-json": b'{"cells": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "unary-minus": None,
    }.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        if data is None:
            nbt.write(nbt.with_answers(release, {**ref, "softmax": "x = " + "-" * 100_000 + "1\n"}), folder / NB)
        else:
            (folder / NB).write_bytes(data)
    put("=2+5")
    put("eve\nmallory,10,graded")
    (course / "submitted" / "mallory").symlink_to(course / "submitted" / "ref0")
    (course / "submitted" / "linked-solutions").symlink_to(course / "solutions")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:
        gb.add_student("formula", first_name='=HYPERLINK("http://evil.example","x")', last_name="@SUM(A1)")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    courses = [copy_course(tmp_path_factory.mktemp(f"class{i}")) for i in range(2)]
    for course in courses:
        build(course)
    procs = [
        subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "-C",
                str(ROOT),
                "grade",
                f"ASSIGNMENT={ASSIGNMENT}",
                f"COURSE={course}",
                "JOBS=2",
                "GRADE_FLAGS=--no-progress --memory 2 --cell-timeout 60",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for course in courses
    ]
    started = time.monotonic()
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    return {
        "courses": courses,
        "outs": outs,
        "codes": [p.returncode for p in procs],
        "seconds": time.monotonic() - started,
    }


def rows(course):
    with open(course / "grades.csv", newline="") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}


def test_two_runs_at_once_both_grade_every_correct_student_fully(two_runs):
    for course, out in zip(two_runs["courses"], two_runs["outs"]):
        grades = rows(course)
        for student in ("ref0", "ref1", LONG_ID):
            assert float(grades[student]["score"]) == 10, (student, grades[student], out[-3000:])
        assert "grader error" not in out, out[-3000:]


def test_limits_hold_for_the_sandbox_as_a_whole(two_runs):
    for course in two_runs["courses"]:
        grades = rows(course)
        assert float(grades["memory-attack"]["score"]) <= 6, grades["memory-attack"]  # children were killed
        assert float(grades["folder-fill"]["score"]) == 7, grades["folder-fill"]  # the folder is 1 GiB
        assert float(grades["tmp-fill"]["score"]) == 7, grades["tmp-fill"]  # so is /tmp


def test_ids_and_links_are_refused_not_followed(two_runs):
    for course, out in zip(two_runs["courses"], two_runs["outs"]):
        grades = rows(course)
        assert set(grades) == {
            "ref0",
            "ref1",
            LONG_ID,
            "memory-attack",
            "folder-fill",
            "tmp-fill",
            "formula",
            "deep-json",
            "unary-minus",
        }
        for name in ("=2+5", "eve mallory,10,graded", "mallory", "linked-solutions"):  # a newline cannot forge a line
            assert f"  REFUSED {name}: " in out, out[-3000:]
        assert not any(line.startswith("mallory,10") for line in out.splitlines())
        assert not (course / "feedback" / "linked-solutions").exists()
        text = (course / "grades.csv").read_text()
        assert "\n=" not in text and ",=" not in text and ",@" not in text
        assert grades["formula"]["first_name"].startswith("'=") and grades["formula"]["last_name"] == "'@SUM(A1)"


def test_a_notebook_that_breaks_reading_marks_only_its_student(two_runs):
    for course in two_runs["courses"]:
        grades = rows(course)
        for student in ("deep-json", "unary-minus"):
            assert grades[student]["status"] == "unreadable" and float(grades[student]["score"]) == 0, grades[student]
            assert "could not be read within the grader's limits" in grades[student]["reason"]


def test_an_uploaded_timestamp_is_not_the_submission_time(two_runs):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{two_runs['courses'][0]}/gradebook.db") as gb:
        stamp = gb.find_submission(ASSIGNMENT, "ref1").timestamp
    assert stamp is None or stamp.year != 2000
