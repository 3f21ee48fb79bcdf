"""End-to-end nbgrader autograding of a simulated class, in a private copy of the course.

Per assignment: the reference earns full marks; a correct solution written differently earns full marks; the
untouched exercise earns 0; every realistic wrong answer loses points on the tests of that answer, and only there.
"""

from __future__ import annotations

import pytest
from helpers import ASSIGNMENTS, ROOT, students_for

from attention_course import notebooks as nbt

pytestmark = [pytest.mark.slow]


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
            assert score == max_score, (
                f"{student}: {name} earned {score}/{max_score}; only {sorted(losing)} should lose"
            )
