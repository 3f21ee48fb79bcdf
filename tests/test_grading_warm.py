"""Warm kernels (issue 21): kernels forked from one template per worker, each confined to its student.

One worker (JOBS=1) grades, one after another, three submissions that attack the template (leave something for
the next student, read what was inherited, kill or harm the template) and then an honest probe that looks for
anything they left (tests/adversarial/template_attacks.py). Every kernel must have been forked warm, the probe
must find nothing and earn full marks, and the attackers keep exactly the points of their answers.
"""

from __future__ import annotations

import os
import threading

import pytest
from adversarial import template_attacks as attacks
from helpers import ROOT, copy_course, grades_rows, kernel_outputs, make_grade

from attention_course import notebooks as nbt
from attention_course.grading import warm
from attention_course.grading.sandbox import available

SANDBOX = available()
sandboxed = pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox: {SANDBOX}")
ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"


def _outputs(course, student: str) -> str:
    return kernel_outputs(course, student, ASSIGNMENT)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("warm"))
    release = nbt.read(ROOT / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB))
    answers = {
        "a-leaver": {"softmax": attacks.LEAVER + ref["softmax"]},
        "b-reader": {"softmax": attacks.READER + ref["softmax"]},
        "c-killer": {"softmax": attacks.KILLER + ref["softmax"], "attention_pooling": attacks.KILL_ALL},
        "d-probe": {"softmax": attacks.PROBE + ref["softmax"]},
    }
    for student, changed in answers.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbt.write(nbt.with_answers(release, {**ref, **changed}), folder / NB)
    for name in ("resource", "fcntl", "struct", "random"):  # shadows of what a forked child imports while still
        # root: the template never has the student's folder on sys.path, so none of them runs (they would end the
        # child, the kernel would start cold and the test below would see it)
        (course / "submitted" / "a-leaver" / ASSIGNMENT / f"{name}.py").write_text("raise SystemExit(3)\n")
    mounts = len(warm.mount_points())
    proc = make_grade(course, ASSIGNMENT, "--no-progress --cell-timeout 60", jobs=1)
    return {
        "course": course,
        "out": proc.stdout,
        "rows": {r["student_id"]: r for r in grades_rows(course)},
        "mounts": (mounts, len(warm.mount_points())),
    }


@pytest.mark.slow
@pytest.mark.sandbox
@sandboxed
def test_every_kernel_was_forked_from_the_template(graded):
    assert "kernels: 4 warm (forked from each worker's template)\n" in graded["out"], graded["out"][-3000:]
    before, after = graded["mounts"]  # the machine's mounts: at most the slot root's, made once, is left
    assert after <= before + 1, f"{after - before} mounts left by one grading run"


@pytest.mark.slow
@pytest.mark.sandbox
@sandboxed
def test_the_attacks_really_ran(graded):
    """The leaver wrote where it could and its daemon listened: what the probe does not find was contained."""
    left = _outputs(graded["course"], "a-leaver")
    for where in ("'/tmp'", "'/var/tmp'", "'~'", "'.'", "'shm'", "'daemon'"):
        assert where in left, left
    for where in ("'/var'", "'/run'", "'/'", "'/opt/course'", "'/run/grader-control'"):  # read-only there
        assert where not in left.split("left:")[1], left
    assert "template reached: []" in _outputs(graded["course"], "b-reader")
    killer = _outputs(graded["course"], "c-killer")
    assert "visible: ['1', '2'] me: 2" in killer and "template harmed: []" in killer, killer


@pytest.mark.slow
@pytest.mark.sandbox
@sandboxed
def test_the_next_student_finds_nothing_and_keeps_full_marks(graded):
    assert "probe saw: []" in _outputs(graded["course"], "d-probe")
    rows = graded["rows"]
    full = rows["d-probe"]["max_score"]
    assert rows["d-probe"]["score"] == full
    for student in ("a-leaver", "b-reader"):
        assert rows[student]["score"] == full, rows[student]
    # the killer's last answer killed its own kernel (and nothing else): it loses the tests after it
    killer = next(line for line in graded["out"].splitlines() if line.strip().startswith("c-killer"))
    assert "kernel died" in killer and 0 < float(rows["c-killer"]["score"]) < float(full), killer


def test_cold_where_warm_cannot_be_used(monkeypatch):
    job = {"uid": 61000, "package_dir": "/nonexistent", "limits": {}}
    monkeypatch.setenv("GRADING_KERNELS", "cold")
    assert warm.template_for(job) == (None, "cold kernels chosen (GRADING_KERNELS=cold)")
    monkeypatch.delenv("GRADING_KERNELS")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(warm.template_for(job)))
    thread.start()
    thread.join()
    assert seen == [(None, "cold: not a worker's main thread (a Dask worker)")]
