"""`grades.csv`: nbgrader's export columns, one row per student and assignment (0 without a submission),
plus the grader's status and reason for each row."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
           "late_submission_penalty", "score", "max_score", "status", "reason"]


def _reason(course, assignment: str, student: str) -> tuple[str, str]:
    folder = course.autograded / student / assignment
    states = []
    for path in sorted(folder.glob("*.grading.json")) if folder.is_dir() else []:
        try:
            states.append(json.loads(path.read_text()))
        except ValueError:
            continue
    if not states:
        return ("no submission", "no submission") if not (course.submitted / student / assignment).is_dir() \
            else ("not graded", "not graded yet")
    bad = [s for s in states if s.get("status") != "graded"]
    status = bad[0]["status"] if bad else "graded"
    return status, " | ".join(s.get("reason", "") + (f" [{'; '.join(s['notes'])}]" if s.get("notes") else "")
                              for s in states)


def export(course, db_url: str, dest: Path) -> int:
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook(db_url) as gb:
        students = {s.id: s for s in gb.students}
        if course.submitted.exists():
            for p in course.submitted.iterdir():
                if p.is_dir() and p.name not in students and not p.name.startswith("."):
                    students[p.name] = gb.update_or_create_student(p.name)
        for assignment in gb.assignments:
            for sid in sorted(students):
                student = students[sid]
                row = {"assignment": assignment.name, "duedate": assignment.duedate or "", "student_id": sid,
                       "last_name": student.last_name or "", "first_name": student.first_name or "",
                       "email": student.email or "", "max_score": assignment.max_score}
                try:
                    sub = gb.find_submission(assignment.name, sid)
                except MissingEntry:
                    row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                else:
                    penalty = sub.late_submission_penalty or 0.0
                    row.update(timestamp=sub.timestamp or "", raw_score=sub.score,
                               late_submission_penalty=penalty, score=sub.score - penalty)
                row["status"], row["reason"] = _reason(course, assignment.name, sid)
                rows.append(row)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, dest)
    return len(rows)
