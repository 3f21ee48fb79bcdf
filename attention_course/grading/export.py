"""`grades.csv`: nbgrader's export columns, one row per student and assignment (0 without a submission),
plus the grader's status and reason for each row. Text cells are made spreadsheet-safe (`ids.csv_cell`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from attention_course.grading import term
from attention_course.grading.collect import submission_times, versions
from attention_course.grading.course import atomic_write
from attention_course.grading.ids import csv_cell
from attention_course.grading.records import NotebookStatus as Status
from attention_course.grading.records import overall, reason_line

COLUMNS = [
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
    "extension_hours",
    "hours_late",
    "status",
    "reason",
]


def _reason(course, assignment: str, student: str) -> tuple[str, str]:
    folder = course.autograded / student / assignment
    states = []
    for path in sorted(folder.glob("*.grading.json")) if folder.is_dir() else []:
        try:
            states.append(json.loads(path.read_text()))
        except ValueError:
            continue
    if not states:
        return (
            (Status.NO_SUBMISSION, "no submission")
            if not (course.submitted / student / assignment).is_dir()
            else (Status.NOT_GRADED, "not graded yet")
        )
    return overall([s.get("status") for s in states]), reason_line(states)


def export(course, db_url: str, dest: Path, roster: list[str] | None = None) -> int:
    """Write `dest`; `roster` (the grader's, valid ids only) adds students with a folder in submitted/."""
    rows = grade_rows(course, db_url, roster)
    write(dest, rows)
    return len(rows)


def write(dest: Path, rows: list[dict]) -> None:
    """grades.csv from `grade_rows`, spreadsheet-safe."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, COLUMNS)
    writer.writeheader()
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)
    atomic_write(dest, text.getvalue().encode())


def grade_rows(course, db_url: str, roster: list[str] | None = None) -> list[dict]:
    """grades.csv's rows (plain values), the term applied to the gradebook first (term.apply)."""
    from nbgrader.api import Gradebook, MissingEntry

    from attention_course.grading.gradebook import roster as course_roster

    rows = []
    roster = course_roster(course, db_url) if roster is None else roster
    with Gradebook(db_url) as gb:
        students = {s.id: s for s in gb.students}
        for sid in roster:
            if sid not in students:
                students[sid] = gb.update_or_create_student(sid)
        term.apply(course, gb, students)
        for assignment in gb.assignments:
            chooser: list = []  # the resubmission rule, made when a student has several versions
            graded = submission_times(course, assignment.name)
            for sid in sorted(students):
                student = students[sid]
                row = {
                    "assignment": assignment.name,
                    "duedate": assignment.duedate or "",
                    "student_id": sid,
                    "last_name": student.last_name or "",
                    "first_name": student.first_name or "",
                    "email": student.email or "",
                    "max_score": assignment.max_score,
                }
                note = ""
                try:
                    sub = gb.find_submission(assignment.name, sid)
                except MissingEntry:
                    row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                    row.update(extension_hours="", hours_late="")
                else:
                    penalty = sub.late_submission_penalty or 0.0
                    row.update(
                        timestamp=sub.timestamp or "",
                        raw_score=sub.score,
                        late_submission_penalty=penalty,
                        score=max(0.0, sub.score - penalty),
                        extension_hours=f"{sub.extension.total_seconds() / 3600:g}" if sub.extension else "",
                        hours_late=f"{sub.total_seconds_late / 3600:.2f}" if sub.total_seconds_late else "",
                    )
                    kept = versions(course, assignment.name, sid)
                    if len(kept) > 1 and not chooser:
                        chooser.append(term.chooser(course, assignment.name, students))
                    if len(kept) > 1 and graded.get(sid) != chooser[0](sid, kept):
                        note = "; another collected submission is now the one to grade (run make grade)"
                status, reason = _reason(course, assignment.name, sid)
                row["status"], row["reason"] = status, reason + note
                rows.append(row)
    return rows
