"""`make grade` end to end on an adversarial class, in a private copy of the course (see tests/adversarial/).

One `make grade` run grades the whole corpus (JOBS=2); the tests then check exact scores, statuses and reasons
per student in grades.csv, the gradebook and the summary, that feedback shows no hidden test, that the probes
(solutions/, gradebook, other students, network) failed, and that a rerun is idempotent.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, copy_course, run

from attention_course import leaks

sys.path.insert(0, str(Path(__file__).parent))
from adversarial import ASSIGNMENT, NB, build

from attention_course.grading.sandbox import available

SANDBOX = available()
# Outside CI a machine without bubblewrap skips these tests; in CI (CI=true) they run, and fail loudly.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}"),
]
GRADE_FLAGS = "--cell-timeout 25 --no-progress"


def make(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    return run(["make", "--no-print-directory", "-C", str(ROOT), *args], cwd=ROOT, timeout=timeout, check=check)


def read_grades(course: Path) -> dict[str, dict]:
    with open(course / "grades.csv", newline="") as fh:
        return {(r["student_id"]): r for r in csv.DictReader(fh) if r["assignment"] == ASSIGNMENT}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from nbgrader.api import Gradebook

    course = copy_course(tmp_path_factory.mktemp("adversarial"))
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:  # the roster: one student never submits
        gb.add_student("roster-only", first_name="Rosa", last_name="Only")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    cases = build(course, ROOT, listener.getsockname()[1])
    protected = {
        p: digest(p) for p in [course / "submitted" / "blank" / ASSIGNMENT / NB, course / "solutions" / ASSIGNMENT / NB]
    }
    os.environ["GRADING_KEEP_SCRATCH"] = "1"  # the sandboxes' files are searched for hidden tests below
    try:
        proc = make("grade", f"ASSIGNMENT={ASSIGNMENT}", f"COURSE={course}", "JOBS=2", f"GRADE_FLAGS={GRADE_FLAGS}")
    finally:
        del os.environ["GRADING_KEEP_SCRATCH"]
    scratch = Path(proc.stdout.split("scratch kept in ")[-1].split()[0])
    kept = tmp_path_factory.mktemp("sandbox-files")
    for work in scratch.glob("*/planned"):  # what the kernels saw and wrote (their folders), before it is removed
        shutil.copytree(work, kept / work.parent.name, symlinks=True)
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        listener.accept()
        connected = True
    except BlockingIOError:
        connected = False
    listener.close()
    return {
        "course": course,
        "cases": cases,
        "out": proc.stdout,
        "protected": protected,
        "connected": connected,
        "sandbox_files": kept,
    }


def test_every_student_gets_exactly_the_points_earned(graded):
    rows = read_grades(graded["course"])
    assert set(rows) == set(graded["cases"]), "grades.csv must hold one row per roster student"
    wrong = []
    for student, case in graded["cases"].items():
        row = rows[student]
        got = (float(row["score"]), row["status"])
        if (
            got != (case.score, case.status)
            or case.reason.lower() not in row["reason"].lower()
            or float(row["max_score"]) != 10
        ):
            wrong.append(f"{student}: got {got} {row['reason']!r}, expected {case}")
    assert not wrong, "\n".join(wrong)


def test_gradebook_holds_the_same_scores(graded):
    from nbgrader.api import Gradebook, MissingEntry

    rows = read_grades(graded["course"])
    with Gradebook(f"sqlite:///{graded['course']}/gradebook.db") as gb:
        for student, case in graded["cases"].items():
            try:
                score = gb.find_submission(ASSIGNMENT, student).score
            except MissingEntry:
                assert case.status == "no submission", student
                continue
            assert score == case.score == float(rows[student]["score"]), student
            assert gb.find_assignment(ASSIGNMENT).max_score == 10


def test_summary_names_every_student_with_a_reason(graded):
    out = graded["out"]
    for student, case in graded["cases"].items():
        line = next((l for l in out.splitlines() if l.strip().startswith(student + " ")), None)
        assert line, f"{student} missing from the summary:\n{out[-3000:]}"
        assert f"{case.score:g}/10" in line and case.reason.lower() in line.lower(), line
    assert "graded: " in out and "failed" in out


def test_probes_failed_and_nothing_outside_was_touched(graded):
    assert not graded["connected"], "a submission reached a server on the grader's loopback"
    for path, before in graded["protected"].items():
        assert digest(path) == before, f"{path} was modified"
    assert "owned" not in (graded["course"] / "grades.csv").read_text()


def test_feedback_exists_and_shows_no_hidden_test(graded):
    course = graded["course"]
    secrets = [s for s in leaks.secrets(course / "solutions" / ASSIGNMENT) if s.kind == "hidden test"]
    assert secrets
    pages = sorted((course / "feedback").rglob("*.html"))
    students = {p.relative_to(course / "feedback").parts[0] for p in pages}
    assert students >= {s for s, c in graded["cases"].items() if c.status != "no submission"}
    assert not leaks.find_leaks(secrets, pages)
    page = (course / "feedback" / "edited-tests" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "softmax_matches_torch" in page and "hidden tests run here" in page


def test_rerun_is_idempotent(graded):
    course = graded["course"]
    before = (course / "grades.csv").read_text()
    proc = make("grade", f"ASSIGNMENT={ASSIGNMENT}", f"COURSE={course}", "JOBS=2", f"GRADE_FLAGS={GRADE_FLAGS}")
    assert " 0 notebook(s) executed" in proc.stdout, proc.stdout[-2000:]
    assert (course / "grades.csv").read_text() == before


def _hidden_lines(course: Path):
    secrets = [s for s in leaks.secrets(course / "solutions" / ASSIGNMENT) if s.kind == "hidden test"]
    assert len(secrets) > 20
    return secrets


def test_no_hidden_test_reaches_a_sandbox(graded, tmp_path):
    """The kernel's inputs, history, frames and files hold no hidden-test line: `history-leak` dumped all it could
    see after every test cell into leak-probe.txt, which the sandbox left in its folder."""
    secrets = _hidden_lines(graded["course"])
    probe = next(graded["sandbox_files"].rglob("leak-probe.txt"))
    dumps = probe.read_text().splitlines()
    assert sum(line.startswith("after ") for line in dumps) == 4, "the probe ran after each of the 4 test cells"
    seen = []
    for line in dumps:
        if line.startswith("{"):
            record = json.loads(line)
            seen += record["inputs"] + record["frames"] + [record["out"]]
    assert any("serve(" in text for text in seen), "the probe saw the grader's one line per test cell"
    plain = tmp_path / "seen.txt"
    plain.write_text("\n".join(seen))
    assert not leaks.find_leaks(secrets, [plain])
    # a positive control: the same search finds the hidden tests in the source notebook
    assert leaks.find_leaks(secrets, [graded["course"] / "solutions" / ASSIGNMENT / NB])
    files = [p for p in graded["sandbox_files"].rglob("*") if p.is_file() and not p.is_symlink()]
    assert not leaks.find_leaks(secrets, [f for f in files if f.suffix in (".txt", ".py", ".ipynb", ".json")])


def test_encoded_output_carries_no_hidden_test(graded, tmp_path):
    """Base64 in feedback pages and grades.csv (the student printed and raised encoded history) decodes to
    nothing of the hidden tests."""
    secrets = _hidden_lines(graded["course"])
    course = graded["course"]
    texts = [p.read_text() for p in (course / "feedback").rglob("*.html")] + [(course / "grades.csv").read_text()]
    decoded = []
    for text in texts:
        for token in re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", text):
            try:
                decoded.append(base64.b64decode(token + "=" * (-len(token) % 4)).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                continue
    assert decoded, "the history-leak student printed base64"
    plain = tmp_path / "decoded.txt"
    plain.write_text("\n".join(decoded))
    assert not leaks.find_leaks(secrets, [plain])


def test_student_strings_are_escaped_in_grades_csv(graded):
    for row in read_grades(graded["course"]).values():
        assert all(32 <= ord(ch) < 127 for ch in row["reason"]), row["reason"]


def test_the_attacks_win_against_an_in_kernel_judge(graded, tmp_path):
    """The attacks are real: with the tests in the student's kernel (plain `nbgrader autograde`), each of them
    earns full marks with wrong code; under `make grade` (the graded fixture) each earns what its code earns."""
    from adversarial.attacks import WIN_IN_KERNEL
    from nbgrader.api import Gradebook

    course = copy_course(tmp_path / "in-kernel")
    build(course, ROOT, 1)
    for folder in (course / "submitted").iterdir():
        if folder.name not in WIN_IN_KERNEL:
            shutil.rmtree(folder)
    db = f"sqlite:///{course}/plain.db"
    run(["nbgrader", "generate_assignment", ASSIGNMENT, "--force", f"--CourseDirectory.db_url={db}"], cwd=course)
    run(["nbgrader", "autograde", ASSIGNMENT, "--force", f"--CourseDirectory.db_url={db}"], cwd=course)
    judged = read_grades(graded["course"])
    with Gradebook(db) as gb:
        for student in WIN_IN_KERNEL:
            assert gb.find_submission(ASSIGNMENT, student).score == 10, f"{student}: the attack did not work in-kernel"
            assert float(judged[student]["score"]) < 10, f"{student}: the attack worked under make grade"
