"""The grader's pure parts, without a sandbox (fast; no root or bubblewrap): id rules, spreadsheet-safe cells,
escaping, links, per-student planning limits, collect's times and the instructor's error messages."""

from __future__ import annotations

import json
import os
import sys
import zipfile

import pytest
from helpers import ROOT, copy_course

from attention_course import notebooks as nbt
from attention_course.grading import intake, planner
from attention_course.grading.collect import submission_times
from attention_course.grading.course import Course
from attention_course.grading.ids import csv_cell, escape, valid_id
from attention_course.grading.options import Options

ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"


@pytest.mark.parametrize(
    "name,ok",
    [
        ("alice", True),
        ("doe.jane-2", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("=2+5", False),
        ("eve\nmallory,9", False),
        ("../solutions", False),
        (".hidden", False),
        ("a..b", False),
        ("", False),
        ("jane doe", False),
        ("x" * 40, True),
    ],
)
def test_one_id_rule(name, ok):
    assert valid_id(name) is ok


def test_csv_cells_are_neutralised():
    assert csv_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    for lead in "+-@":
        assert csv_cell(lead + "1").startswith("'")
    assert csv_cell("line\nbreak\x00") == "line break "
    assert csv_cell(7.5) == 7.5 and csv_cell("all tests passed") == "all tests passed"


def test_escape_is_one_printable_line():
    assert escape("a\nb\x1b[2J\u202e") == "a b?[2J?"
    assert len(escape("x" * 999, 40)) == 40


def test_links_below_submitted_are_found(tmp_path):
    (tmp_path / "submitted" / "real" / ASSIGNMENT).mkdir(parents=True)
    (tmp_path / "submitted" / "eve").symlink_to(tmp_path / "submitted" / "real")
    path = tmp_path / "submitted" / "eve" / ASSIGNMENT / NB
    assert intake.link_in(path, tmp_path / "submitted") == "eve"
    assert intake.link_in(tmp_path / "submitted" / "real" / ASSIGNMENT / NB, tmp_path / "submitted") is None


def _course_with(tmp_path, notebooks: dict[str, bytes]) -> Course:
    course = copy_course(tmp_path / "course")
    for student, data in notebooks.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / NB).write_bytes(data)
    return Course.load(course)


def test_a_notebook_that_breaks_reading_marks_only_its_student(tmp_path):
    """Deeply nested JSON and a cell of 100,000 unary minus signs fail inside a child process with limits: the
    student is `unreadable` with the reason; a normal notebook next to them is planned as usual."""
    release = nbt.read(ROOT / "exercises" / ASSIGNMENT / NB)
    good = nbt.with_answers(release, nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB)))
    minus = nbt.with_answers(release, {"softmax": "x = " + "-" * 100_000 + "1\n"})
    underscores = nbt.with_answers(release, {"softmax": "x = [" + ", ".join(['"__"'] * 12_000) + "]\n"})
    deep = b'{"cells": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    import nbformat

    course = _course_with(
        tmp_path,
        {
            "deep": deep,
            "minus": nbformat.writes(minus).encode(),
            "good": nbformat.writes(good).encode(),
            "underscores": nbformat.writes(underscores).encode(),
        },
    )
    opts = Options(ASSIGNMENT)
    source = course.source_notebooks(ASSIGNMENT)[0]
    scratch = tmp_path / "scratch"
    jobs = {
        s: planner.plan_isolated(course, opts, s, source, {ASSIGNMENT}, 30, scratch, b"k" * 32)
        for s in ("deep", "minus", "good", "underscores")
    }
    assert jobs["deep"].state.status == "unreadable" and jobs["deep"].run is None
    for student in ("deep", "minus"):  # RecursionError in json, MemoryError in ast.parse: caught in the child
        assert "could not be read within the grader's limits" in jobs[student].state.reason, jobs[student].state
        assert jobs[student].state.score == 0 and jobs[student].state.max_score == 10
    assert jobs["good"].run is not None and jobs["good"].state.status == "pending"
    assert jobs["underscores"].run is not None  # the static scan stays linear (it took 80 s when quadratic)


def test_submission_time_comes_from_collect_not_from_the_student(tmp_path):
    course = Course.load(copy_course(tmp_path / "course"))
    archive = tmp_path / "dl.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo(f"doejane_12345_6789012_{NB}", date_time=(2026, 11, 30, 23, 59, 0))
        zf.writestr(info, '{"cells": []}')
        zf.writestr(
            zipfile.ZipInfo("doejane_12345_6789012_timestamp.txt", date_time=(2026, 11, 30, 23, 59, 0)),
            "2000-01-01 00:00:00",
        )
    from attention_course.grading.collect import collect

    collect(course, ASSIGNMENT, archive)
    assert (course.submitted / "doejane" / ASSIGNMENT / "timestamp.txt").exists()
    assert submission_times(course, ASSIGNMENT) == {"doejane": "2026-11-30 23:59:00"}


def _cli(*args, cwd=ROOT):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "attention_course.grading", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_instructor_mistakes_get_one_clear_line(tmp_path):
    course = copy_course(tmp_path / "course")
    (tmp_path / "notzip.zip").write_text("hello")
    (tmp_path / "empty").mkdir()
    ok_zip = tmp_path / "ok.zip"
    with zipfile.ZipFile(ok_zip, "w") as zf:
        zf.writestr("x.ipynb", "{}")
    cases = [
        (["--course", str(course), "collect", ASSIGNMENT, str(tmp_path / "missing.zip")], "no such file"),
        (["--course", str(course), "collect", ASSIGNMENT, str(tmp_path / "notzip.zip")], "is not a zip file"),
        (["--course", str(course), "collect", ASSIGNMENT, str(ok_zip), "--pattern", "(unclosed"], "bad --pattern"),
        (
            ["--course", str(course), "collect", ASSIGNMENT, str(ok_zip), "--pattern", r"(?P<id>\w+)_(?P<f>.+)"],
            "named groups",
        ),
        (["--course", str(tmp_path / "empty"), "grade", ASSIGNMENT], "no nbgrader_config.py"),
        (["--course", str(course), "grade", "no-such-assignment"], "unknown assignment"),
        (["--course", str(course), "collect", "no-such-assignment", str(ok_zip)], "unknown assignment"),
    ]
    for args, message in cases:
        proc = _cli(*args)
        assert proc.returncode != 0, args
        assert message in proc.stderr and "Traceback" not in proc.stderr + proc.stdout, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_feedback_that_would_show_a_reference_answer_is_reduced_to_the_scores(tmp_path):
    """Three lines of a reference answer in anything but the student's own code (here: a cell's output)
    replace the page by the score table; the same lines in the student's own answer cell are theirs to see."""
    import nbformat

    from attention_course.grading import feedback as fb

    course = Course.load(copy_course(tmp_path / "course"))
    answer = nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB))["softmax"]
    body = "\n".join(
        nbt.solution_blocks(
            nbt.read(ROOT / "solutions" / ASSIGNMENT / NB)
            .cells[
                next(
                    i
                    for i, c in enumerate(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB).cells)
                    if nbt.nbgrader_meta(c).get("grade_id") == "softmax"
                )
            ]
            .source
        )
    )
    state = {
        "student": "s",
        "assignment": ASSIGNMENT,
        "notebook": ASSIGNMENT,
        "score": 10,
        "max_score": 10,
        "status": "graded",
        "reason": "all tests passed",
        "notes": [],
        "cells": {},
    }
    pages = {}
    for where in ("answer", "output"):
        nb = nbformat.v4.new_notebook()
        own = nbformat.v4.new_code_cell(answer)
        own.metadata["grading"] = {"origin": "answer", "grade_id": "softmax"}
        shown = nbformat.v4.new_code_cell("print(open('notes.txt').read())")
        shown.metadata["grading"] = {"origin": "source", "grade_id": "imports"}
        if where == "output":
            shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text=body)]
        nb.cells = [own, shown]
        executed = tmp_path / f"{where}.ipynb"
        nbformat.write(nb, str(executed))
        from attention_course import leaks

        page = fb.write_feedback(course, {**state, "student": where}, executed)
        raw = page.read_text()
        import re

        outside = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https?://[^"]*)"', raw)
        assert not outside, f"feedback loads nothing from outside: {outside}"
        assert (page.parent / fb.MATHJAX).resolve().is_file(), "MathJax is served from the feedback folder"
        pages[where] = leaks.text_of(page)
    assert "exp.sum(dim=dim, keepdim=True)" in pages["answer"], "the student's own answer is shown back"
    assert "exp.sum" not in pages["output"] and "Score: 10 / 10" in pages["output"]
    assert "print(open" not in pages["output"], "the page is the score table alone"


def test_a_state_round_trips_and_a_broken_one_is_refused():
    from attention_course.grading.records import NotebookState, NotebookStatus

    state = NotebookState.zero("alice", ASSIGNMENT, "nb", {"t1": 2.0, "t2": 3.0}, NotebookStatus.MISSING, "missing")
    assert (state.score, state.max_score) == (0.0, 5.0)
    data = state.to_json()
    assert data["cells"]["t1"] == {"score": 0.0, "max_score": 2.0, "status": "not graded", "why": "missing"}
    assert "fingerprint" not in data and NotebookState.from_json(data) == state
    for broken in ([], {**data, "cells": {"t1": {"score": "10"}}}, {**data, "notes": "x"}, {**data, "status": "ok?"}):
        with pytest.raises(ValueError):
            NotebookState.from_json(broken)


def test_a_set_up_cell_that_fails_in_the_judge_is_a_grader_error_not_the_students():
    import socket

    from attention_course.grading.judge import Judge
    from attention_course.grading.records import NotebookState, NotebookStatus
    from attention_course.grading.scoring import finish

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    judge = Judge(listener, set(), b"k" * 32)
    judge.run_locked("import torch")
    assert judge.setup_failed is None
    judge.run_locked("from attention_course.no_such_module import helper")
    judged = judge.run_test("t1", "assert helper(1) == 1", 5)
    listener.close()
    assert judged["status"] == "grader error" and "ModuleNotFoundError" in judged["evalue"], judged
    state = NotebookState("alice", ASSIGNMENT, "nb", tests={"t1": 0}, points={"t1": 2.0})
    state = finish(state, {"cells": [judged], "died": None, "seconds": 1.0}, None)
    assert state.status == NotebookStatus.GRADER_ERROR and "set-up cell failed" in state.reason, state
    assert state.score == 0 and state.max_score == 2.0


def test_a_forked_child_returns_more_than_a_pipe_holds():
    from attention_course.grading.forked import run_forked

    assert run_forked(lambda: "x" * 300_000, 30, 2**30).value == "x" * 300_000
    assert run_forked(lambda: 1 / 0, 30, 2**30).error == ("ZeroDivisionError", "division by zero")


def test_an_unchanged_saved_result_is_reused_not_saved_again(tmp_path):
    """A rerun reuses a result whose inputs did not change: the planning child says so, and the parent then
    neither runs it nor saves it (nor renders its feedback page) again."""
    import nbformat

    release = nbt.read(ROOT / "exercises" / ASSIGNMENT / NB)
    good = nbt.with_answers(release, nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB)))
    course = _course_with(tmp_path, {"good": nbformat.writes(good).encode()})
    opts, source, scratch = Options(ASSIGNMENT), course.source_notebooks(ASSIGNMENT)[0], tmp_path / "scratch"
    first = planner.plan_isolated(course, opts, "good", source, {ASSIGNMENT}, 30, scratch, b"k" * 32)
    assert first.run is not None and not first.state.reused
    first.state.status = "graded"
    first.state.zero_cells(first.state.points or {}, "for the test")
    first.state_path.parent.mkdir(parents=True)
    first.state_path.write_text(json.dumps(first.state.to_json()))
    again = planner.plan_isolated(course, opts, "good", source, {ASSIGNMENT}, 30, scratch, b"k" * 32)
    assert again.run is None and again.state.reused and again.state.fingerprint == first.state.fingerprint


def test_a_pool_that_broke_before_taking_a_job_loses_it_for_recovery_instead_of_stopping_the_class():
    """Jobs are submitted while the class is still being planned: a worker that dies early (a judge killed)
    breaks the pool before the later jobs are submitted. Those jobs must come back as lost (retried with the
    running ones), not as an exception out of the class run."""
    from concurrent.futures.process import BrokenProcessPool

    from attention_course.grading.grade import _ClassRun
    from attention_course.grading.worker import LocalPool

    class Broken(LocalPool):
        def __init__(self):  # no processes: a pool that broke before it could take anything
            self.jobs_n = 1

        def submit(self, job, course, opts):
            raise BrokenProcessPool("a worker died")

    run = _ClassRun.__new__(_ClassRun)
    run.pool, run.course, run.opts, run.bar, run.died_kernels = Broken(), None, None, None, []
    jobs = [object(), object()]
    assert sorted(map(id, run.collect(run.submit(jobs)))) == sorted(map(id, jobs))


@pytest.mark.sandbox
def test_restarting_the_pool_kills_the_old_workers_even_those_that_catch_sigterm():
    """A broken pool's surviving workers get only SIGTERM from concurrent.futures, and nbclient catches it while
    a notebook runs: such a worker finished its job as "kernel died" and unmounted the folders the retry of the
    same job was running in (test_grading_bounded's ipc-fill, once in a CI rehearsal). The restart kills them."""
    import signal
    import time

    from attention_course.grading.worker import LocalPool

    pool = LocalPool(1)
    try:
        pool.pool.submit(signal.signal, signal.SIGTERM, signal.SIG_IGN).result(60)  # as nbclient's handler does
        pool.pool.submit(time.sleep, 120)
        workers = list(pool.pool._processes.values())
        assert workers and all(p.is_alive() for p in workers)
        pool.restart()
        assert not any(p.is_alive() for p in workers), "a worker of the old pool is still running"
    finally:
        pool.close()
