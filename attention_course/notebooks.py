"""Reading, normalising and rewriting the course's nbgrader notebooks.

Used by `make exercises`/`make normalize`, by the tests (which load the reference answers from `solutions/` and
build simulated submissions from `exercises/`), and by the grading tools.

Conventions of a course notebook (see `solutions/`):
- answer cells carry nbgrader metadata `solution: true` and a `grade_id` named after what they define;
- test cells carry `grade: true`, `points` and a `grade_id` named `test_<function>`;
- set-up cells (imports, modules provided from earlier assignments) are `locked: true` with no points;
- cells without nbgrader metadata are prose and demonstrations.
"""

from __future__ import annotations

import copy
import re
import types
from pathlib import Path

import nbformat

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def read(path: str | Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def write(nb: nbformat.NotebookNode, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_answer(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell) -> bool:
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


def is_setup(cell) -> bool:
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("locked")) and not meta.get("grade") and not meta.get("solution")


def answer_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """grade_id -> answer cell, in notebook order."""
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if c.cell_type == "code" and is_answer(c)}


def test_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """grade_id -> autograder test cell, in notebook order."""
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if c.cell_type == "code" and is_test(c)}


def points(nb) -> dict[str, float]:
    """grade_id -> points of every graded cell."""
    return {
        nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c).get("points", 0))
        for c in nb.cells
        if nbgrader_meta(c).get("grade")
    }


def strip_markers(source: str) -> str:
    """The answer as a student would type it: the reference with nbgrader's solution markers removed."""
    lines = [line for line in source.splitlines() if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END)]
    return "\n".join(lines)


# nbgrader's blocks: group 1 is the text between the markers (the one definition of their shape here).
SOLUTION_BLOCK = re.compile(rf"{SOLUTION_BEGIN}\n(.*?)\n\s*{SOLUTION_END}", re.S)
HIDDEN_BLOCK = re.compile(rf"{HIDDEN_BEGIN}\n(.*?)\n?\s*{HIDDEN_END}\n?", re.S)


def solution_blocks(source: str) -> list[str]:
    """The text between each BEGIN/END SOLUTION pair (what nbgrader removes from the student version)."""
    return [m.group(1) for m in SOLUTION_BLOCK.finditer(source)]


def hidden_blocks(source: str) -> list[str]:
    return [m.group(1) for m in HIDDEN_BLOCK.finditer(source)]


def without_hidden(source: str, replacement: str = "") -> str:
    """A test cell without its hidden block, markers included (what nbgrader gives students), or with
    `replacement` in its place."""
    return HIDDEN_BLOCK.sub(lambda _: replacement, source)


def with_answers(nb, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of `nb` whose answer cells named in `answers` hold the given source (a simulated submission)."""
    unknown = set(answers) - set(answer_cells(nb))
    if unknown:
        raise KeyError(f"no answer cell named {sorted(unknown)}")
    new = copy.deepcopy(nb)
    for grade_id, cell in answer_cells(new).items():
        if grade_id in answers:
            cell.source = answers[grade_id]
    return new


def reference_answers(solution_nb) -> dict[str, str]:
    """grade_id -> the reference answer, markers stripped."""
    return {gid: strip_markers(cell.source) for gid, cell in answer_cells(solution_nb).items()}


def load_module(path: str | Path, name: str | None = None) -> types.ModuleType:
    """Execute a notebook's set-up and answer cells (not its demos or tests) and return them as a module.

    This is how tests use the reference implementations in `solutions/` without copying them.
    """
    nb = read(path)
    module = types.ModuleType(name or Path(path).stem.replace("-", "_"))
    module.__file__ = str(path)
    for cell in nb.cells:
        if cell.cell_type == "code" and (is_setup(cell) or is_answer(cell)):
            code = compile(strip_markers(cell.source), f"{path}:{nbgrader_meta(cell).get('grade_id')}", "exec")
            exec(code, module.__dict__)
    return module


def normalize(nb) -> nbformat.NotebookNode:
    """No outputs, no execution counts, nbformat 4.5 with stable cell ids, a fixed kernelspec.

    Existing ids are kept (so they stay fixed across edits); a cell without one gets its nbgrader grade_id or a
    name made from its position.
    """
    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        **({"celltoolbar": "Create Assignment"} if any(nbgrader_meta(c) for c in nb.cells) else {}),
    }
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        cell_id = cell.get("id") or nbgrader_meta(cell).get("grade_id") or f"cell-{index:02d}"
        cell_id = re.sub(r"[^A-Za-z0-9_-]", "-", cell_id)[:64]
        while cell_id in seen:
            cell_id = f"{cell_id}-{index}"
        seen.add(cell_id)
        cell["id"] = cell_id
        keep = {k: v for k, v in cell.get("metadata", {}).items() if k in ("nbgrader", "tags", "deletable", "editable")}
        cell["metadata"] = keep
        if cell.cell_type == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    nbformat.validate(nb)
    return nb


def is_normalized(path: str | Path) -> bool:
    text = Path(path).read_text()
    return text.rstrip("\n") == nbformat.writes(normalize(nbformat.reads(text, as_version=4))).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m attention_course.notebooks normalize PATH...`: rewrite notebooks in normal form."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["normalize", "check"])
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    bad = []
    for path in args.paths:
        if args.command == "normalize":
            write(normalize(read(path)), path)
        elif not is_normalized(path):
            bad.append(path)
    for path in bad:
        print(f"not normalised: {path} (run `make normalize`)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
