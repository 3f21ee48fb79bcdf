"""The visible tests (what a student's Validate runs) catch the realistic mistakes, not only wrong shapes.

For every assignment, each simulated submission of `tests/submissions/<id>.py` is run as the student would run
it: the released exercise (`exercises/`, hidden tests already removed by nbgrader) with the reference answers
and that one answer filled in, every cell executed in order, errors noted and execution continued (as Validate
reports every failing cell). Then:

- the reference and every correct variant (`CORRECT`, and `WRONG` entries that lose no points) pass every
  visible test cell: the visible checks never reject a right answer (except those named in
  `NEEDS_TRUSTED_PARTS`, right answers next to a wrong other part, which only the graders' trusted copies
  rescue);
- every realistic mistake (`WRONG` with points to lose) fails at least one visible test cell, unless the
  submissions file names it in `HIDDEN_ONLY`, the mistakes deliberately left to the hidden tests (with a comment
  why), which may be at most a quarter of the assignment's mistakes; and a mistake named there must really pass
  every visible test (otherwise the name is stale).

The cells run in one fresh Python process per assignment, each submission in a fresh namespace, in a Python that
can import only torch and the standard library (`tests/torch_only.py`: `python -I` plus an allow-list import
hook): the visible cells must need nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import ASSIGNMENTS, ROOT
from submissions import for_assignment
from torch_only import bootstrap, clean_env

from attention_course import notebooks as nbt

pytestmark = [pytest.mark.slow]

# Executes {"name": [[kind, grade_id, source], ...]} and prints {"name": {"failed": [grade_id, ...], "errors": ...}}.
_RUNNER = textwrap.dedent("""
    import json, sys, traceback
    specs = json.load(open(sys.argv[1]))
    report = {}
    for name, cells in specs.items():
        namespace = {"__name__": "__main__"}
        failed, errors = [], {}
        for kind, grade_id, source in cells:
            try:
                exec(compile(source, f"<{name}:{grade_id or kind}>", "exec"), namespace)
            except BaseException as error:  # noqa: BLE001 - a student's cell may raise anything
                if kind == "test":
                    failed.append(grade_id)
                    errors[grade_id] = f"{type(error).__name__}: {str(error)[:300]}"
        report[name] = {"failed": failed, "errors": errors}
    print(json.dumps(report))
""")


def _cells(nb) -> list[list]:
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = nbt.nbgrader_meta(cell)
        kind = "test" if nbt.is_test(cell) else "answer" if nbt.is_answer(cell) else "other"
        out.append([kind, meta.get("grade_id"), cell.source])
    return out


def submissions(assignment: str) -> dict[str, tuple[dict, set]]:
    """name -> (answers, test cells it must lose); every name is run on the released exercise."""
    module = for_assignment(assignment)
    reference = nbt.reference_answers(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    subs = {"reference": (reference, set()), "correct": ({**reference, **module.CORRECT}, set())}
    for name, (cell, source, losing) in module.WRONG.items():
        subs[name] = ({**reference, cell: source}, set(losing))
    return subs


@pytest.fixture(scope="module")
def visible_results(tmp_path_factory) -> dict[str, dict]:
    results = {}
    for assignment in ASSIGNMENTS:
        release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
        specs = {
            name: _cells(nbt.with_answers(release, answers)) for name, (answers, _) in submissions(assignment).items()
        }
        folder = tmp_path_factory.mktemp(f"visible-{assignment}")
        (folder / "specs.json").write_text(json.dumps(specs))
        (folder / "runner.py").write_text(bootstrap(("torch",)) + _RUNNER)
        proc = subprocess.run(
            [sys.executable, "-I", "runner.py", "specs.json"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=1200,
            env=clean_env(folder),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[assignment] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_right_answers_pass_every_visible_test(visible_results, assignment):
    # NEEDS_TRUSTED_PARTS: right answers sitting next to a wrong other part (the graders swap in trusted parts)
    exempt = set(getattr(for_assignment(assignment), "NEEDS_TRUSTED_PARTS", set()))
    for name, (_, losing) in submissions(assignment).items():
        if not losing and name not in exempt:
            report = visible_results[assignment][name]
            assert not report["failed"], f"{assignment}/{name} is right but fails visibly: {report['errors']}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_mistake_fails_a_visible_test(visible_results, assignment):
    module = for_assignment(assignment)
    hidden_only = set(getattr(module, "HIDDEN_ONLY", set()))
    mistakes = {name for name, (_, _, losing) in module.WRONG.items() if losing}
    assert hidden_only <= mistakes, f"HIDDEN_ONLY names no mistake: {sorted(hidden_only - mistakes)}"
    assert len(hidden_only) <= len(mistakes) / 4, (
        f"{len(hidden_only)} of {len(mistakes)} mistakes are left to hidden tests (at most a quarter)"
    )
    missed = sorted(name for name in mistakes - hidden_only if not visible_results[assignment][name]["failed"])
    assert not missed, f"{assignment}: Validate (visible tests only) passes these mistakes: {missed}"
    stale = sorted(name for name in hidden_only if visible_results[assignment][name]["failed"])
    assert not stale, f"{assignment}: HIDDEN_ONLY names mistakes the visible tests catch: {stale}"
