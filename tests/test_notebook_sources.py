"""Source notebooks are clean: normal form (no outputs, fixed ids, nbformat 4.5) and the course's cell pattern."""

import re

import pytest
from helpers import ASSIGNMENTS, ROOT, source_notebooks

from attention_course import notebooks as nbt

SOURCES = [p for a in ASSIGNMENTS for p in source_notebooks(a)] + sorted((ROOT / "book").rglob("*.ipynb"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_notebook_is_normalized(path):
    assert nbt.is_normalized(path), f"{path} has outputs, unstable ids or stray metadata: run `make normalize`"


def test_there_is_an_assignment_per_chapter():
    assert ASSIGNMENTS, "no assignment in solutions/"
    for a in ASSIGNMENTS:
        assert source_notebooks(a) == [ROOT / "solutions" / a / f"{a}.ipynb"], f"solutions/{a}/ must hold {a}.ipynb"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_assignment_follows_the_cell_pattern(assignment):
    """Each answer cell: a docstring'd signature and one solution block; each test cell: visible asserts, a
    hidden block, points, and an id named after the function it tests."""
    nb = nbt.read(source_notebooks(assignment)[0])
    answers, tests = nbt.answer_cells(nb), nbt.test_cells(nb)
    assert answers and tests
    assert "imports" in {nbt.nbgrader_meta(c).get("grade_id") for c in nb.cells if nbt.is_setup(c)}
    for gid, cell in answers.items():
        assert len(nbt.solution_blocks(cell.source)) == 1, f"{gid}: exactly one BEGIN/END SOLUTION block"
        assert '"""' in cell.source.split(nbt.SOLUTION_BEGIN)[0], f"{gid}: the signature needs a docstring"
    for gid, cell in tests.items():
        assert nbt.nbgrader_meta(cell).get("points", 0) > 0, f"{gid}: a test cell without points"
        assert len(nbt.hidden_blocks(cell.source)) == 1, f"{gid}: exactly one hidden-test block"
        visible = cell.source.split(nbt.HIDDEN_BEGIN)[0]
        assert re.search(r"\bassert", visible), f"{gid}: the visible part needs at least one assert"
        assert any(gid.startswith(a) for a in answers) or any(a in gid for a in answers), (
            f"test id {gid} should be named <function>_<property>"
        )
    # the graded cells are in order: each function's tests come after its answer
    order = [nbt.nbgrader_meta(c).get("grade_id") for c in nb.cells]
    for gid in tests:
        owner = max((a for a in answers if gid.startswith(a) or a in gid), key=len)
        assert order.index(owner) < order.index(gid)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_graded_notebooks_import_torch_only(assignment):
    """d2l costs seconds per graded notebook: exercises import torch (and the standard library) only."""
    nb = nbt.read(source_notebooks(assignment)[0])
    for cell in nb.cells:
        if cell.cell_type != "code" or nbt.is_test(cell):
            continue
        for line in cell.source.splitlines():
            m = re.match(r"\s*(?:from|import)\s+([\w.]+)", line)
            if m:
                assert m.group(1).split(".")[0] in {"torch", "math", "itertools", "functools", "typing"}, line
