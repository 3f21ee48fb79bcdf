"""What the tests share, in one module: paths, the course's assignments, the private HOME for Jupyter and
matplotlib (set on import), the simulated classes, and how a test runs a command or `make grade`.

Tests import from here (`from helpers import ROOT, make_grade`); conftest.py holds only the fixtures."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
HOME = ROOT / "_build" / "home"
sys.path.insert(0, str(ROOT))
from attention_course.jupyter_env import private_home  # noqa: E402 (the checkout's package, before any install)

for var, value in private_home(HOME).items():
    os.environ.setdefault(var, value)
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["PATH"] = os.pathsep.join([str(VENV_BIN), os.environ["PATH"]])
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

from tools.synthetic import copy_course  # noqa: E402 (one definition, shared with benchmarks/)

ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
# For quick local runs: COURSE_ASSIGNMENTS=scoring-functions,masking restricts the per-assignment tests.
if os.environ.get("COURSE_ASSIGNMENTS"):
    ASSIGNMENTS = [a for a in ASSIGNMENTS if a in os.environ["COURSE_ASSIGNMENTS"].split(",")]


def source_notebooks(assignment: str) -> list[Path]:
    return sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))


def run(cmd: list[str], cwd: Path, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, returning its output; on failure the assertion message shows the output's tail."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def students_for(assignment: str) -> dict[str, tuple[dict, set | None]]:
    """student id -> (answer cells to fill, the test cells expected to lose points; None = all of them)."""
    from submissions import for_assignment

    from attention_course import notebooks as nbt

    module = for_assignment(assignment)
    reference = nbt.reference_answers(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    students = {
        "reference": (reference, set()),
        "blank": ({}, None),
        "rewritten": ({**reference, **module.CORRECT}, set()),
    }
    for name, (cell, source, losing) in module.WRONG.items():
        assert cell in reference, f"{assignment}: WRONG[{name!r}] names no answer cell {cell!r}"
        students[f"wrong-{name}"] = ({**reference, cell: source}, set(losing))
    return students


def write_class(assignment: str, course: Path) -> dict:
    """A course copy whose submitted/ holds the assignment's whole simulated class; returns students_for()."""
    from attention_course import notebooks as nbt

    copy_course(course)
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    students = students_for(assignment)
    for student, (answers, _) in students.items():
        nbt.write(
            nbt.with_answers(release, answers), course / "submitted" / student / assignment / f"{assignment}.ipynb"
        )
    return students


def gradebook_scores(assignment: str, course: Path, students) -> dict:
    """(assignment, student) -> {test cell: (score, max_score)} from the course's sqlite gradebook."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:
        for student in students:
            nb = gb.find_submission_notebook(assignment, assignment, student)
            scores[assignment, student] = {g.cell.name: (g.score, g.max_score) for g in nb.grades}
    return scores


def grade_assignment(assignment: str, course: Path) -> dict:
    """Autograde one assignment for its whole simulated class in its own course copy and gradebook."""
    students = write_class(assignment, course)
    db = f"sqlite:///{course}/gradebook.db"
    run(["nbgrader", "generate_assignment", assignment, "--force", f"--CourseDirectory.db_url={db}"], cwd=course)
    run(["nbgrader", "autograde", assignment, "--force", f"--CourseDirectory.db_url={db}"], cwd=course)
    return gradebook_scores(assignment, course, students)


def make_grade(
    course: Path,
    assignment: str,
    flags: str = "--no-progress",
    *,
    jobs: int = 2,
    env: dict | None = None,
    timeout: float = 3600,
    ok: tuple[int, ...] | None = (0,),
) -> subprocess.CompletedProcess:
    """`make grade ASSIGNMENT=... COURSE=... JOBS=... GRADE_FLAGS=...` as an instructor types it; stdout and
    stderr together. An exit status outside `ok` fails the test (0: all graded; 1: some not gradable; None:
    any status, for the caller to check)."""
    cmd = [
        "make", "--no-print-directory", "-C", str(ROOT), "grade", f"ASSIGNMENT={assignment}",
        f"COURSE={course}", f"JOBS={jobs}", f"GRADE_FLAGS={flags}",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if ok is not None:
        assert proc.returncode in ok, f"make grade exited {proc.returncode}:\n{proc.stdout[-6000:]}"
    return proc


def grades_rows(course: Path) -> list[dict]:
    """The rows of the course's grades.csv (one per roster student of the last graded assignment)."""
    with open(course / "grades.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def kernel_outputs(course: Path, student: str, assignment: str) -> str:
    """The text outputs of a student's autograded notebook (what the kernel printed before the first test)."""
    from attention_course import notebooks as nbt

    nb = nbt.read(course / "autograded" / student / assignment / f"{assignment}.ipynb")
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
