"""Building the notebook that is executed for one submission, from the trusted source notebook.

The source notebook in `solutions/` decides what is graded: which cells are tests, their points, their code
(hidden tests included), the locked set-up cells. From the submission only the student's own code is taken:
the answer cells (matched by nbgrader `grade_id`, or by cell id when the metadata was removed) and the
student's other cells (demos, helpers, notes), which keep their place after the graded cell they followed.

So a deleted, edited or re-labelled test cell runs as the source has it; changed metadata or points mean
nothing; a missing answer cell simply defines nothing (its tests fail). Duplicated cells: the first copy is
the graded one, later copies run as the student's own code.
"""

from __future__ import annotations

import ast
import copy
import json
from dataclasses import dataclass, field

import nbformat

from attention_course import notebooks as nbt


class Unreadable(Exception):
    """The submitted file is not a notebook we can grade; the message says why."""


def read_submission(data: bytes) -> nbformat.NotebookNode:
    if not data.strip():
        raise Unreadable("empty file")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable("not a notebook (binary file, not UTF-8 JSON)") from None
    except json.JSONDecodeError as exc:
        raise Unreadable(f"malformed JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise Unreadable("not a notebook (JSON without a list of cells)")
    try:
        nb = nbformat.from_dict(raw)
        if nb.get("nbformat", 4) != 4:
            nb = nbformat.convert(nb, 4)
    except Exception as exc:
        raise Unreadable(f"not a notebook ({type(exc).__name__})") from None
    cells = []
    for cell in nb.cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(str(s) for s in src)
        if not isinstance(src, str):
            src = ""
        meta = cell.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        if cell["cell_type"] == "code":
            new = nbformat.v4.new_code_cell(src)
        elif cell["cell_type"] == "markdown":
            new = nbformat.v4.new_markdown_cell(src)
        else:
            new = nbformat.v4.new_raw_cell(src)
        nbg = meta.get("nbgrader")
        if isinstance(nbg, dict):
            new.metadata["nbgrader"] = nbg
        if isinstance(cell.get("id"), str):
            new["id"] = cell["id"][:64]
        cells.append(new)
    if not any(c.cell_type == "code" and c.source.strip() for c in cells):
        raise Unreadable("empty notebook (no code)")
    return nbformat.from_dict({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@dataclass
class Assembled:
    nb: nbformat.NotebookNode  # what is executed (origin of each cell in metadata.grading)
    tests: dict[str, int] = field(default_factory=dict)  # graded cell grade_id -> index in nb
    points: dict[str, float] = field(default_factory=dict)
    missing_answers: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # test/locked cells absent or altered in the submission


def _visible(source: str) -> str:
    """A test cell as students receive it: nbgrader removes the hidden block, markers included."""
    return nbt.without_hidden(source)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _gid(cell) -> str | None:
    gid = nbt.nbgrader_meta(cell).get("grade_id") if isinstance(nbt.nbgrader_meta(cell), dict) else None
    return gid if isinstance(gid, str) else None


def assemble(source: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> Assembled:
    keyed = {}  # grade_id -> source cell, for every cell with nbgrader metadata in the source
    for cell in source.cells:
        gid = _gid(cell)
        if gid and nbt.nbgrader_meta(cell):
            keyed[gid] = cell
    answers = {g for g, c in keyed.items() if nbt.is_answer(c)}
    # match the submission's cells to source cells: by grade_id, else (metadata removed) by cell id
    matched: dict[str, int] = {}
    for i, cell in enumerate(submission.cells):
        gid = _gid(cell)
        if gid in keyed and gid not in matched and keyed[gid].cell_type == cell.cell_type:
            matched[gid] = i
    for i, cell in enumerate(submission.cells):
        cid = cell.get("id")
        if cid in answers and cid not in matched and cell.cell_type == "code" and i not in matched.values():
            matched[cid] = i
    by_index = {i: g for g, i in matched.items()}
    # the student's own cells, attached to the graded cell they follow (None: before any)
    extras: dict[str | None, list] = {}
    anchor = None
    for i, cell in enumerate(submission.cells):
        if i in by_index:
            anchor = by_index[i]
            continue
        own = copy.deepcopy(cell)
        own.metadata = {"grading": {"origin": "student"}}
        extras.setdefault(anchor, []).append(own)
    out = Assembled(nb=nbformat.v4.new_notebook())
    out.nb.metadata = copy.deepcopy(source.metadata)
    cells = list(extras.get(None, []))
    for cell in source.cells:
        gid = _gid(cell)
        if not gid or gid not in keyed:
            continue  # the source's prose and demos: the student's own copies run instead
        if gid in answers:
            if gid not in matched:
                out.missing_answers.append(gid)
                continue
            new = copy.deepcopy(cell)
            new.source = submission.cells[matched[gid]].source
            new.metadata["grading"] = {"origin": "answer", "grade_id": gid}
        else:
            new = copy.deepcopy(cell)
            new.metadata["grading"] = {"origin": "source", "grade_id": gid}
            if gid not in matched or _squash(submission.cells[matched[gid]].source) != _squash(_visible(cell.source)):
                if nbt.nbgrader_meta(cell).get("grade") or cell.cell_type == "code":
                    out.restored.append(gid)
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        new["id"] = f"c{len(cells)}"
        cells.append(new)
        if nbt.nbgrader_meta(cell).get("grade") and cell.cell_type == "code":
            out.tests[gid] = len(cells) - 1
            out.points[gid] = cell_points(cell)
        cells.extend(extras.get(gid, []))
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    out.nb.cells = cells
    return out


def cell_points(cell: nbformat.NotebookNode) -> float:
    """The points of a graded cell, as the source notebook gives them (the one definition the grader uses)."""
    return float(nbt.nbgrader_meta(cell).get("points", 0) or 0)


def points_of(source: nbformat.NotebookNode) -> dict[str, float]:
    """grade_id -> points of every autograded test cell of the source notebook."""
    return {
        nbt.nbgrader_meta(c)["grade_id"]: cell_points(c)
        for c in source.cells
        if nbt.nbgrader_meta(c).get("grade") and c.cell_type == "code"
    }


def student_names(source: nbformat.NotebookNode) -> set[str]:
    """The names the answer cells of the source notebook define at top level (functions, classes, variables):
    what the test cells use of the student's work, and what the judge looks up in the student's kernel."""
    names: set[str] = set()
    for cell in source.cells:
        if cell.cell_type != "code" or not nbt.is_answer(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names
