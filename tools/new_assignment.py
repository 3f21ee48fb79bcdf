"""Helpers for writing an nbgrader source notebook from Python (authoring aid; the .ipynb is the source of truth).

    from tools.new_assignment import md, setup, answer, tests, demo, save
    save("solutions/x/x.ipynb", [md("# ..."), setup("imports", "import torch"), answer("softmax", src), ...])

Then `make normalize exercises`.
"""

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from attention_course.notebooks import normalize, write


def _meta(grade_id, *, grade, solution, locked, points=None, task=False):
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": task,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def md(text, grade_id=None):
    cell = new_markdown_cell(text.strip("\n"))
    if grade_id:  # a locked instruction cell: students cannot edit it
        cell.metadata = _meta(grade_id, grade=False, solution=False, locked=True)
        cell.id = grade_id
    return cell


def setup(grade_id, source):
    cell = new_code_cell(source.strip("\n"), metadata=_meta(grade_id, grade=False, solution=False, locked=True))
    cell.id = grade_id
    return cell


def answer(grade_id, source):
    cell = new_code_cell(source.strip("\n"), metadata=_meta(grade_id, grade=False, solution=True, locked=False))
    cell.id = grade_id
    return cell


def tests(grade_id, points, source):
    cell = new_code_cell(
        source.strip("\n"), metadata=_meta(grade_id, grade=True, solution=False, locked=True, points=points)
    )
    cell.id = grade_id
    return cell


def demo(source):
    return new_code_cell(source.strip("\n"))


def save(path, cells):
    nb = new_notebook(cells=cells)
    write(normalize(nb), path)
