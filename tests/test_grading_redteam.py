"""The red team's corpus (tests/adversarial/redteam.py) graded end to end: one `make grade JOBS=2` per assignment
in a private copy of the course, each run inside a memory cgroup of its own (3.5 GiB: the trusted side of a class
run on a shared host; the sandboxes get their own cgroups), then every student's score, status and reason, its
feedback page and grades.csv are checked against what a correct grader gives.

Also a script: `python tests/test_grading_redteam.py [assignment ...]` grades and prints the table (got vs must).
`REDTEAM_ASSIGNMENTS=masking,multi-head` restricts the pytest run (it is part of `make test`).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from adversarial.redteam import MAX, attacks, build, live_html
from helpers import ROOT, copy_course

from attention_course.grading.sandbox import available

SANDBOX = available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}"),
    # Seven class runs (3 min on 2 cores, 2026-12-07), part of `make test`. Attacks that pass a check are flagged,
    # not failed (tests/adversarial/redteam_results.md): rt-numpy-scratch (a score matrix in a numpy buffer
    # allocated before the call), rt-queue-thread-mh/-mha, rt-scipy-softmax, rt-standin-remote-arg.
]
GRADE_FLAGS = "--cell-timeout 120 --no-progress"
CAP = int(3.5 * 2**30)
CGROUP = Path("/sys/fs/cgroup/memory")


def _capped(cmd: list[str], name: str) -> list[str]:
    """`cmd` run inside a fresh memory cgroup (v1) capped at CAP, when one can be made; else as is."""
    group = CGROUP / f"redteam-{os.getpid()}-{name}"
    try:
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(CAP))
    except OSError:
        return cmd
    return ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *cmd]


def grade(course: Path, assignment: str) -> dict:
    cmd = [
        "make", "--no-print-directory", "-C", str(ROOT), "grade", f"ASSIGNMENT={assignment}",
        f"COURSE={course}", "JOBS=2", f"GRADE_FLAGS={GRADE_FLAGS}",
    ]  # fmt: skip
    proc = subprocess.run(_capped(cmd, assignment), capture_output=True, text=True, timeout=3600)
    group = CGROUP / f"redteam-{os.getpid()}-{assignment}"
    peak = ""
    if group.exists():
        peak = (group / "memory.max_usage_in_bytes").read_text().strip()
        ooms = (group / "memory.failcnt").read_text().strip()
        peak = f"trusted side peak {int(peak) / 2**30:.2f} GiB, {ooms} allocation failures at the cap"
        try:
            group.rmdir()
        except OSError:
            pass
    rows = {}
    if (course / "grades.csv").exists():
        with open(course / "grades.csv", newline="", encoding="utf-8", errors="replace") as fh:
            rows = {r["student_id"]: r for r in csv.DictReader(fh) if r["assignment"] == assignment}
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr, "rows": rows, "peak": peak}


def _pids(mark: str) -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if mark in line and "ps -eo" not in line]


def run_corpus(course: Path, assignments=None) -> dict:
    copy_course(course)
    students = os.environ.get("REDTEAM_STUDENTS")
    cases = build(course, ROOT, assignments, set(students.split(",")) if students else None)
    runs = {a: grade(course, a) for a in cases}
    leftovers = {}
    for case in [c for by in cases.values() for c in by.values()]:
        if case.outlive:
            leftovers[case.student] = _pids(case.outlive)
            for pid in leftovers[case.student]:  # processes our own run started: end them, by id
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        if case.shm and (Path("/dev/shm") / case.shm).exists():
            leftovers.setdefault(case.student, []).append("/dev/shm/" + case.shm)
            (Path("/dev/shm") / case.shm).unlink()
    return {"course": course, "cases": cases, "runs": runs, "leftovers": leftovers}


def verdict(result: dict, assignment: str, student: str) -> tuple[bool, str]:
    """(the grader was right, what it did) for one student of the corpus."""
    case = result["cases"][assignment][student]
    run = result["runs"][assignment]
    row = run["rows"].get(student)
    if row is None:
        return False, f"no row in grades.csv (make grade exit {run['rc']})"
    score, status, reason = float(row["score"]), row["status"], row["reason"]
    got = f"{score:g}/{MAX[assignment]} {status}: {reason[:150]}"
    problems = []
    flagged = "flagged for review" in reason.lower()
    if status == "grader error" and case.error_ok:
        pass
    elif status != "graded":
        problems.append(f"status {status}")
    elif score != case.score and not (case.flagged_score is not None and score == case.flagged_score and flagged):
        problems.append(f"score {score:g}, must be {case.score:g}" + (" (or flagged)" if case.flagged_score else ""))
    if "kernel died" in reason.lower() and case.klass == 0:
        problems.append("an honest classmate saved as 'kernel died'")
    page_path = result["course"] / "feedback" / student / assignment / f"{assignment}.html"
    page = page_path.read_text(errors="replace") if page_path.exists() else ""
    if status == "graded" and not page:
        problems.append("no feedback page")
    for marker in case.absent:
        where = [w for w, text in (("feedback", page), ("grades.csv", reason)) if marker in text]
        if where:
            problems.append(f"{marker!r} carried out into {', '.join(where)}")
    if case.inert:
        problems += [f"feedback keeps {what}" for what in live_html(page)]
    if result["leftovers"].get(student):
        problems.append(f"left behind {result['leftovers'][student]}")
    return not problems, got + ("" if not problems else "  <-- " + "; ".join(problems))


def _selected():
    chosen = os.environ.get("REDTEAM_ASSIGNMENTS")
    return set(chosen.split(",")) if chosen else None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return run_corpus(tmp_path_factory.mktemp("redteam") / "course", _selected())


IDS = [(a.assignment, a.student) for a in attacks() if _selected() is None or a.assignment in _selected()]


@pytest.mark.parametrize(("assignment", "student"), IDS, ids=[s for _, s in IDS])
def test_attack_earns_what_its_honest_parts_earn(corpus, assignment, student):
    ok, got = verdict(corpus, assignment, student)
    assert ok, f"{student} ({corpus['cases'][assignment][student].what}): {got}"


def test_honest_classmates_keep_full_marks(corpus):
    wrong = []
    for assignment, cases in corpus["cases"].items():
        for student in [s for s, case in cases.items() if case.klass == 0]:
            ok, got = verdict(corpus, assignment, student)
            if not ok:
                wrong.append(f"{student}: {got}")
    assert not wrong, "\n".join(wrong)


def rescore(course: Path) -> dict:
    """The verdicts for a course graded earlier (grades.csv and feedback kept), with the corpus as it is now."""
    import tempfile

    cases = build(Path(tempfile.mkdtemp(prefix="redteam-cases-")), ROOT)
    runs = {}
    with open(course / "grades.csv", newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    for assignment in cases:
        runs[assignment] = {
            "rc": "?",
            "peak": "",
            "rows": {r["student_id"]: r for r in rows if r["assignment"] == assignment},
        }
    return {"course": course, "cases": cases, "runs": runs, "leftovers": {}}


def main(argv: list[str]) -> int:
    import tempfile

    if argv[:1] == ["--rescore"]:
        result = rescore(Path(argv[1]))
    else:
        course = Path(tempfile.mkdtemp(prefix="redteam-")) / "course"
        result = run_corpus(course, set(argv) or None)
    failures = 0
    for assignment, by in result["cases"].items():
        run = result["runs"][assignment]
        print(f"== {assignment} (make grade exit {run['rc']}; {run['peak']})")
        for student, case in by.items():
            ok, got = verdict(result, assignment, student)
            failures += not ok
            must = f"{case.score:g}" + (f" or {case.flagged_score:g}+flag" if case.flagged_score is not None else "")
            print(f"{'ok  ' if ok else 'FAIL'} class {case.klass} {student:28} must {must:12} got {got}")
    print(f"course kept in {result['course']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
