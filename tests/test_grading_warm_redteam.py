"""Red team of warm kernels (report: tests/adversarial/warm_redteam.md), each attack now contained.

Every test here failed on the warm-kernel commit the red team attacked (2026-12-08); each states the behaviour
the fix gives. One worker (JOBS=1) grades `a-planter` and then `b-victim`, so the victim's kernel is forked from
the same template right after the planter's (tests/adversarial/warm_redteam.py):

- the planter makes ~245 processes with clone(CLONE_PARENT): their parent is the template, which never waits
  for them, so they stay zombies of the template (owned by the leased uid) for the whole run. The worker's
  reap(uid) sees them and cannot kill them: it waits its full 60 s before and after every later notebook of
  that worker; they fill the uid's RLIMIT_NPROC, so no later kernel of the worker can start a thread or a
  process (an honest answer that computes in a thread loses its points); and every later kernel sees them (a
  channel: their names and exit codes are the planter's);
- the planter writes keys into the uid's user and user-session keyrings: the next kernel of the same leased
  uid reads them (this one holds for cold kernels too: the keyrings are per uid, not per namespace);
- the victim reads what the template's process says about the previous kernels: its children's CPU time
  (/proc/2/stat), its own pid (how many tasks ran before it), and Python's hash secret, which every kernel
  forked from one template shares (a cold kernel has its own).
"""

from __future__ import annotations

import os
import re

import pytest
from adversarial import warm_redteam as rt
from helpers import ROOT, copy_course, grades_rows, kernel_outputs, make_grade

from attention_course import notebooks as nbt
from attention_course.grading.sandbox import available

SANDBOX = available()
sandboxed = pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox: {SANDBOX}")
ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"
ZOMBIE_NAME = "rt-zombie"


def _outputs(course, student: str) -> str:
    return kernel_outputs(course, student, ASSIGNMENT)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("warm-redteam"))
    release = nbt.read(ROOT / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB))
    answers = {
        "a-planter": {"softmax": rt.PLANTER + rt.ZOMBIES.format(count=400, mark=ZOMBIE_NAME) + ref["softmax"]},
        "b-victim": {"softmax": rt.VICTIM + rt.TASKS + ref["softmax"] + rt.THREADED},
    }
    for student, changed in answers.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbt.write(nbt.with_answers(release, {**ref, **changed}), folder / NB)
    proc = make_grade(course, ASSIGNMENT, "--no-progress --cell-timeout 60", jobs=1)
    return {
        "course": course,
        "out": proc.stdout,
        "planter": _outputs(course, "a-planter"),
        "victim": _outputs(course, "b-victim"),
        "rows": {r["student_id"]: r for r in grades_rows(course)},
    }


pytestmark = [pytest.mark.slow, pytest.mark.sandbox, sandboxed]


def test_the_attacks_really_ran_warm(graded):
    assert "kernels: 2 warm (forked from each worker's template)\n" in graded["out"], graded["out"][-3000:]
    assert int(re.search(r"made: (\d+)", graded["planter"]).group(1)) >= 200, graded["planter"]
    # the keyrings: every add_key is refused in the sandbox (nokeys.py's seccomp filter), so nothing is planted
    assert "planted keys: []" in graded["planter"], graded["planter"]


def test_no_process_of_a_kernel_outlives_it_as_a_zombie_of_the_template(graded):
    """clone(CLONE_PARENT) from the kernel: the template (pid 2) is the parent, never waits: zombies for good."""
    assert "zombies seen: 0 " in graded["victim"], graded["victim"]
    assert ZOMBIE_NAME not in graded["victim"], graded["victim"]


def test_a_kernel_cannot_take_points_from_the_next_student(graded):
    """The zombies count against the leased uid's RLIMIT_NPROC (256) for good: the planter fills it (the pids
    cgroup lets it make ~245), and the next kernel of the worker cannot start a single thread. The victim's
    softmax is the reference's, computed in a one-thread pool: 10/10 in a cold kernel (and in a warm one with no
    planter before it); after the planter, 6/10 (`RuntimeError: can't start new thread`)."""
    row = graded["rows"]["b-victim"]
    victim_line = next(line for line in graded["out"].splitlines() if line.strip().startswith("b-victim"))
    assert float(row["score"]) == float(row["max_score"]), victim_line


def test_a_kernel_cannot_slow_down_the_notebooks_after_it(graded):
    """Two small notebooks take ~15 s; with the planter's zombies the worker's reap(uid) spends its 60 s
    timeout before and after each later notebook (and after the planter's)."""
    seconds = int(re.search(r"notebook\(s\) executed in (\d+) s", graded["out"]).group(1))
    assert seconds < 90, graded["out"][-1500:]


def test_nothing_crosses_through_the_uids_keyrings(graded):
    """Keys a kernel adds to its uid's user / user-session keyring are read by the next kernel of that uid
    (cold kernels too: the keyrings are per uid and outlive every process and namespace)."""
    assert "victim found keys: {}" in graded["victim"], graded["victim"]


def test_a_kernel_learns_nothing_of_the_kernels_before_it(graded):
    """The template's /proc/2/stat showed the CPU time of the kernels it forked before, and the kernel's pid
    counted the tasks that ran before it: each kernel now has a PID namespace of its own (pid 2, as a cold
    kernel) and a /proc of that namespace only. What every kernel of one template still shares by design is the
    template's own state, which holds nothing of any student: Python's hash secret and the address layout (the
    grading README says so); both are checked here to be the template's and nothing else."""
    planter = re.search(r"planter pid: (\d+) hash: (-?\d+) layout: (\S+ \S+)", graded["planter"]).groups()
    victim = re.search(r"victim pid: (\d+) hash: (-?\d+) layout: (\S+ \S+)", graded["victim"]).groups()
    cutime, cstime = re.search(r"\(cutime, cstime\): (\d+) (\d+)", graded["victim"]).groups()
    learned = []
    if int(cutime) + int(cstime) > 1:
        learned.append(f"the previous kernels' CPU ticks in /proc/2/stat: {cutime} {cstime}")
    if int(victim[0]) != 2 or int(planter[0]) != 2:
        learned.append(f"tasks that ran before: the planter was pid {planter[0]}, the victim is pid {victim[0]}")
    assert learned == [], learned
    assert planter[1:] == victim[1:]  # the template's hash secret and layout, shared (above), and nothing else
