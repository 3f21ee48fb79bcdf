"""Expected values the student's code cannot move (issue 18, class 1), graded end to end with `make grade`.

The hostile notebooks of tests/adversarial/expectations.py (forwards that change their own weights, nn.Linear
subclasses whose forward lies, functions that write into their inputs) and honest unusual ones are graded in a
private copy of the course, one `make grade` per assignment (JOBS=2); each must earn exactly the points of its
honest parts, with the failing test's message in its reason. Plus quick checks that need no sandbox: the judge
keeps its own inputs and fails a call whose input the kernel changed, `attention_course.expect` in-process, and
the released modern-attention exercise's Part 3 visible tests passing with an unfinished Part 1 (issue 19).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, copy_course, grades_rows, make_grade

from attention_course import expect
from attention_course import notebooks as nbt

sys.path.insert(0, str(Path(__file__).parent))
from adversarial.expectations import build

from attention_course.grading.sandbox import available

SANDBOX = available()
GRADE_FLAGS = "--cell-timeout 300 --no-progress"  # scores, not speed: generous on a loaded machine


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("expectations"))
    cases = build(course, ROOT)
    rows: dict[tuple[str, str], dict] = {}  # (assignment, student) -> row: every roster student has a row per run
    for assignment in sorted({case.assignment for case in cases.values()}):
        make_grade(course, assignment, GRADE_FLAGS)
        rows.update({(assignment, r["student_id"]): r for r in grades_rows(course) if r["assignment"] == assignment})
    return cases, rows


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.skipif(SANDBOX is not None and not os.environ.get("CI"), reason=f"no sandbox here: {SANDBOX}")
def test_each_notebook_earns_exactly_what_its_honest_parts_earn(graded):
    cases, rows = graded
    wrong = []
    for student, case in cases.items():
        row = rows.get((case.assignment, student))
        if row is None:
            wrong.append(f"{student}: no row in grades.csv for {case.assignment}")
            continue
        got = (float(row["score"]), row["status"])
        if got != (case.score, case.status) or case.reason.lower() not in row["reason"].lower():
            wrong.append(f"{student} ({case.assignment}): got {got} {row['reason']!r}, expected {case}")
    assert not wrong, "\n".join(wrong)


# --- no sandbox needed -------------------------------------------------------------------------------------------


def test_expect_helpers_catch_changed_weights_and_inputs():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    kept = expect.set_weights(layer, {"weight": (3, 4), "bias": (3,)})
    assert torch.equal(layer.weight, kept["weight"]) and torch.equal(layer.bias, kept["bias"])
    expect.assert_unchanged(layer, kept)
    with torch.no_grad():
        layer.weight.mul_(0.5)
    with pytest.raises(AssertionError, match="your forward changed its own weights: weight"):
        expect.assert_unchanged(layer, kept)
    with pytest.raises(AssertionError, match=r"weight has shape \(3, 4\), expected \(4, 3\)"):
        expect.set_weights(layer, {"weight": (4, 3)})
    with pytest.raises(AssertionError, match="missing"):
        expect.set_weights(layer, {"W_query.weight": (3, 4)})
    x = torch.randn(2, 3)
    kept_x = x.clone()
    expect.assert_same(x, kept_x, "x")
    x.zero_()
    with pytest.raises(AssertionError, match="modified its input x in place"):
        expect.assert_same(x, kept_x, "x")


def test_judge_keeps_its_inputs_and_fails_a_changed_one():
    from attention_course.grading.judge import _check_inputs_unchanged

    sent = [torch.ones(2, 3), 5, {"valid_lens": torch.tensor([1, 2])}]
    _check_inputs_unchanged(sent, [torch.ones(2, 3), 5, {"valid_lens": torch.tensor([1, 2])}])
    _check_inputs_unchanged([torch.tensor([float("nan"), 1.0])], [torch.tensor([float("nan"), 1.0])])
    with pytest.raises(AssertionError, match=r"your function modified its input \(argument 1\) in place"):
        _check_inputs_unchanged(sent, [torch.zeros(2, 3), 5, {"valid_lens": torch.tensor([1, 2])}])
    with pytest.raises(AssertionError, match="modified its input valid_lens in place"):
        _check_inputs_unchanged({"valid_lens": torch.tensor([1, 2])}, {"valid_lens": torch.tensor([2, 2])})
    assert torch.equal(sent[0], torch.ones(2, 3)), "the judge's own tensor must stay as it was"


def test_modern_attention_part3_visible_tests_pass_with_an_unfinished_part1():
    """Issue 19: Part 3's visible tests run the student's class with a trusted apply_rope (the released exercise,
    run as Validate runs it, with Part 1 left as released and Parts 2-3 answered)."""
    assignment = "modern-attention"
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    nb = nbt.with_answers(release, {k: v for k, v in ref.items() if k != "apply_rope"})
    namespace: dict = {"__name__": "__main__"}
    failed = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            exec(compile(cell.source, "<cell>", "exec"), namespace)
        except Exception as exc:
            if nbt.is_test(cell):
                failed[nbt.nbgrader_meta(cell)["grade_id"]] = f"{type(exc).__name__}: {exc}"
    part1 = {"apply_rope_rotates_pairs", "apply_rope_positions_relative"}
    assert set(failed) == part1, failed
