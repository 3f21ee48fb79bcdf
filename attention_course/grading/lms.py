"""Grade files an LMS imports, for one assignment, from grades.csv's rows (the score after the late penalty):

- Canvas (Grades > Import): `Student, ID, SIS User ID, SIS Login ID, Section`, then one column per assignment
  named `Name (Canvas assignment id)`. Canvas matches a row by `ID`, the Canvas user id: the number `make collect`
  read from the download's file names (`<name>_<user id>_<submission id>_<file>`), else the gradebook's
  `lms_user_id` (nbgrader's roster column). The assignment's Canvas id comes from
  `c.LMSExport.canvas_assignment_ids = {"attention-pooling": 123456}` in nbgrader_config.py (it is in the
  assignment's URL, `/courses/<course>/assignments/<id>`); without it the column is the bare name, which Canvas
  imports as a new assignment.
- Moodle (Grades > Import > CSV file): `First name, Last name, Email address, <assignment>`; in Moodle's preview
  choose *Identify user by*: "Email address" -> "useremail" and map the assignment column to the grade item.
  Moodle's download numbers participants per assignment, which its grade import cannot use: rows are matched by
  the roster's email (Moodle files are placed on the roster student of that name by `make collect`).
- Per question: `student_id`, one column per graded cell (its points), then raw score, penalty and score.

A student the LMS could not match (no Canvas id, no email) is left out of that LMS's file and listed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from attention_course.grading.collect import lms_ids
from attention_course.grading.course import Course, atomic_write
from attention_course.grading.ids import csv_cell

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_COLUMNS = ["First name", "Last name", "Email address"]


def _write(dest: Path, header: list[str], rows: list[list]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows([csv_cell(v) if isinstance(v, str) else v for v in row] for row in rows)
    atomic_write(dest, text.getvalue().encode("utf-8"))


def _points(value) -> str:
    return f"{round(float(value), 4):g}"


def _of(rows: list[dict], assignment: str) -> list[dict]:
    return sorted((r for r in rows if r["assignment"] == assignment), key=lambda r: r["student_id"])


def canvas(course: Course, db_url: str, assignment: str, rows: list[dict], dest: Path) -> list[str]:
    """Write Canvas's gradebook import file; the students left out (no Canvas user id)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        roster_ids = {s.id: s.lms_user_id for s in gb.students if s.lms_user_id}
    collected = lms_ids(course)
    ids = dict(course.config.get("LMSExport", {}).get("canvas_assignment_ids", {}) or {})
    column = f"{assignment} ({ids[assignment]})" if assignment in ids else assignment
    out, left_out = [], []
    for r in _of(rows, assignment):
        canvas_id = collected.get(r["student_id"], {}).get("canvas") or roster_ids.get(r["student_id"])
        if not canvas_id:
            left_out.append(r["student_id"])
            continue
        name = ", ".join(n for n in (r["last_name"], r["first_name"]) if n) or r["student_id"]
        out.append([name, canvas_id, "", "", "", _points(r["score"])])
    _write(dest, [*CANVAS_COLUMNS, column], out)
    return left_out


def moodle(course: Course, db_url: str, assignment: str, rows: list[dict], dest: Path) -> list[str]:
    """Write Moodle's CSV grade import file; the students left out (no email in the roster)."""
    out, left_out = [], []
    for r in _of(rows, assignment):
        if "@" not in (r["email"] or ""):
            left_out.append(r["student_id"])
            continue
        out.append([r["first_name"], r["last_name"], r["email"], _points(r["score"])])
    _write(dest, [*MOODLE_COLUMNS, assignment], out)
    return left_out


def per_question(course: Course, db_url: str, assignment: str, rows: list[dict], dest: Path) -> int:
    """One column per graded cell (`<notebook>/<cell>` when the assignment has several notebooks); 0 for a
    student without a submission. Returns the number of question columns."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        record = gb.find_assignment(assignment)
        cells = [(nb.name, gc.name) for nb in record.notebooks for gc in nb.grade_cells]
        several = len(record.notebooks) > 1
        header = ["student_id", *[f"{n}/{c}" if several else c for n, c in cells]]
        header += ["raw_score", "late_submission_penalty", "score"]
        out = []
        for r in _of(rows, assignment):
            try:
                sub = gb.find_submission(assignment, r["student_id"])
                scores = {(nb.name, g.name): g.score for nb in sub.notebooks for g in nb.grades}
            except MissingEntry:
                scores = {}
            out.append(
                [r["student_id"], *[_points(scores.get(cell) or 0.0) for cell in cells]]
                + [_points(r[k]) for k in ("raw_score", "late_submission_penalty", "score")]
            )
    _write(dest, header, out)
    return len(cells)


def files(course: Course, assignment: str) -> dict[str, Path]:
    return {kind: course.root / f"grades-{kind}-{assignment}.csv" for kind in ("canvas", "moodle", "questions")}
