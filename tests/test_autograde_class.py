"""End-to-end nbgrader autograding of a simulated class, in a private copy of the course.

Per assignment: the reference earns full marks; a correct solution written differently earns full marks; the
untouched exercise earns 0; every realistic wrong answer loses points on the tests of that answer, and only there.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attention_course import notebooks as nbt
from conftest import ASSIGNMENTS, ROOT, copy_course, run
from submissions import for_assignment


def students_for(assignment: str) -> dict[str, tuple[dict, set | None]]:
    """student id -> (answer cells to fill, the test cells expected to lose points; None = all of them)."""
    module = for_assignment(assignment)
    reference = nbt.reference_answers(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    students = {"reference": (reference, set()), "blank": ({}, None),
                "rewritten": ({**reference, **module.CORRECT}, set())}
    for name, (cell, source, losing) in module.WRONG.items():
        assert cell in reference, f"{assignment}: WRONG[{name!r}] names no answer cell {cell!r}"
        students[f"wrong-{name}"] = ({**reference, cell: source}, set(losing))
    return students


def grade_assignment(assignment: str, course: Path) -> dict:
    """Autograde one assignment for its whole simulated class in its own course copy and gradebook."""
    from nbgrader.api import Gradebook

    copy_course(course)
    db = f"sqlite:///{course}/gradebook.db"
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    students = students_for(assignment)
    for student, (answers, _) in students.items():
        nbt.write(nbt.with_answers(release, answers),
                  course / "submitted" / student / assignment / f"{assignment}.ipynb")
    run(["nbgrader", "generate_assignment", assignment, "--force", f"--CourseDirectory.db_url={db}"], cwd=course)
    run(["nbgrader", "autograde", assignment, "--force", f"--CourseDirectory.db_url={db}"], cwd=course)
    scores = {}
    with Gradebook(db) as gb:
        for student in students:
            nb = gb.find_submission_notebook(assignment, assignment, student)
            scores[assignment, student] = {g.cell.name: (g.score, g.max_score) for g in nb.grades}
    return scores


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


CASES = [(a, s) for a in ASSIGNMENTS for s in students_for(a)]


@pytest.mark.parametrize("assignment,student", CASES, ids=[f"{a}/{s}" for a, s in CASES])
def test_autograde_gives_the_expected_points(graded_class, assignment, student):
    _, losing = students_for(assignment)[student]
    cells = graded_class[assignment, student]
    tests = nbt.test_cells(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    assert set(tests) <= set(cells), f"cells not graded: {set(tests) - set(cells)}"
    if losing is None:  # the untouched exercise
        assert sum(score for score, _ in cells.values()) == 0, cells
        return
    unknown = losing - set(tests)
    assert not unknown, f"expected losses in unknown test cells {unknown}"
    for name in tests:
        score, max_score = cells[name]
        if name in losing:
            assert score < max_score, f"{student}: {name} should lose points but earned {score}/{max_score}"
        else:
            assert score == max_score, f"{student}: {name} earned {score}/{max_score}; only {sorted(losing)} should lose"
