"""The gradebook: the roster, the assignment's record, and each student's scores (nbgrader's database).

Only the instructor's grading process writes it (never a worker, never a sandbox): `register_assignment` records
what `nbgrader generate_assignment` would (notebooks, grade and solution cells, checksums), `record` writes one
student's automatic scores once all of their notebooks are done. `grades.csv` is written from it by export.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nbformat

from attention_course.grading.course import Course
from attention_course.grading.ids import valid_id, why_invalid

log = logging.getLogger(__name__)


def roster(course: Course, db_url: str, refused: list | None = None) -> list[str]:
    """Students of the gradebook plus every folder of submitted/ whose name is a valid id. Folders that are
    links or have invalid names are refused: appended to `refused` as (name, why), never graded."""
    from nbgrader.api import Gradebook

    refused = refused if refused is not None else []
    with Gradebook(db_url) as gb:
        students = set()
        for s in gb.students:
            if valid_id(s.id):
                students.add(s.id)
            elif refused is not None:
                refused.append((s.id, why_invalid(s.id)))
    if course.submitted.exists():
        for p in course.submitted.iterdir():
            if p.name.startswith("."):
                continue
            if p.is_symlink():
                refused.append((p.name, "a link in submitted/: refused, not followed"))
            elif not valid_id(p.name):
                refused.append((p.name, why_invalid(p.name)))
            elif p.is_dir():
                students.add(p.name)
    return sorted(students)


def register_assignment(course: Course, db_url: str, assignment: str, sources: list[Path]) -> None:
    """What `nbgrader generate_assignment` records: the assignment, its notebooks, grade and solution cells."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import ClearOutput, ClearSolutions, ComputeChecksums, SaveCells

    with Gradebook(db_url) as gb:
        gb.update_or_create_assignment(assignment)
    for path in sources:
        nb = nbformat.read(str(path), as_version=4)
        resources = {
            "nbgrader": {"db_url": db_url, "assignment": assignment, "notebook": path.stem},
            "language": "python",
        }
        for pp in (ClearSolutions(config=course.config), ClearOutput(), ComputeChecksums(), SaveCells()):
            nb, resources = pp.preprocess(nb, resources)


def record(gb, assignment: str, student: str, states: dict[str, dict], timestamp: str | None) -> None:
    from nbgrader.api import MissingEntry

    gb.update_or_create_student(student)
    try:
        sub = gb.find_submission(assignment, student)
    except MissingEntry:
        sub = gb.add_submission(assignment, student)
    if timestamp:
        try:
            from nbgrader.utils import parse_utc

            sub.timestamp = parse_utc(timestamp)
        except Exception as exc:  # the submission is recorded without its time
            log.warning("%s/%s: submission time %r not recorded: %r", student, assignment, timestamp, exc)
    for notebook in sub.notebooks:
        state = states.get(notebook.name, {})
        cells = state.get("cells", {})
        for grade in notebook.grades:
            if grade.cell.cell_type != "code":
                continue  # manually graded answers stay with the instructor
            grade.auto_score = float(cells.get(grade.name, {}).get("score", 0.0))
            grade.needs_manual_grade = False
    gb.db.commit()
