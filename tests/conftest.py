"""Shared fixtures: paths, the course's assignments, and a private HOME for Jupyter and matplotlib."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


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


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """Autograde every assignment once for the whole simulated class (assignments in parallel, one nbgrader
    call each, one core each); returns the per-cell scores."""
    base = tmp_path_factory.mktemp("class")
    scores = {}
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for result in pool.map(lambda a: grade_assignment(a, base / a), ASSIGNMENTS):
            scores.update(result)
    return scores
