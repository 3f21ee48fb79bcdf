"""The term: due dates, extensions, late penalties and which resubmission is graded, on nbgrader's own gradebook
model (`Assignment.duedate`, `SubmittedAssignment.extension`, `SubmittedAssignment.timestamp`,
`SubmittedNotebook.late_submission_penalty`), so formgrader and `nbgrader export` see the same values.

Two files at the course root, both optional; when present they are the truth and are applied to the gradebook at
every `make grade` and `make export-grades`:

- `duedates.csv`: `assignment,duedate`, e.g. `attention-pooling,2027-02-01 17:00 Europe/Berlin`; a due date
  without a zone is in the course's zone (`c.Exchange.timezone`, nbgrader's, default UTC). Assignments not listed
  keep the gradebook's due date (`nbgrader db assignment add A --duedate=...`).
- `extensions.csv`: `student,assignment,hours`. When the file exists, a submission not listed has no extension
  (one set with nbgrader's own tools is replaced); without the file the gradebook's extensions stand.

Submission times are the ones `make collect` recorded from the LMS download (`.collected/<assignment>.json`,
wall-clock times in the course's zone), never a student's `timestamp.txt`. The penalty is the one of nbgrader's
`LateSubmissionPlugin` chosen by `c.AssignLatePenalties.plugin_class` (late.py), per notebook, clipped to
[0, score] as nbgrader's `AssignLatePenalties` does.

Resubmissions: every collected version is kept (`.collected/<assignment>/<student>/<time>/`); the one graded is
the latest at or before the student's deadline (due date + extension); when every version is late, the latest.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from attention_course.grading.course import Course
from attention_course.grading.records import GradingError

DUEDATES = "duedates.csv"
EXTENSIONS = "extensions.csv"


class TermError(GradingError):
    """An instructor's mistake in duedates.csv, extensions.csv or the zone: one line, said by the CLI."""


@dataclass
class Term:
    zone: str = "UTC"
    duedates: dict[str, dt.datetime] = field(default_factory=dict)  # assignment -> naive UTC
    extensions: dict[tuple[str, str], dt.timedelta] | None = None  # (assignment, student); None: no file

    def extension(self, assignment: str, student: str, in_gradebook: dt.timedelta | None) -> dt.timedelta | None:
        if self.extensions is None:
            return in_gradebook
        return self.extensions.get((assignment, student))

    def deadline(
        self,
        assignment: str,
        student: str,
        gradebook_duedate: dt.datetime | None = None,
        gradebook_extension: dt.timedelta | None = None,
    ) -> dt.datetime | None:
        due = self.duedates.get(assignment, gradebook_duedate)
        if due is None:
            return None
        return due + (self.extension(assignment, student, gradebook_extension) or dt.timedelta(0))


def zone_of(course: Course) -> str:
    return str(course.config.Exchange.get("timezone", "UTC") or "UTC")


def to_utc(text: str, zone: str = "UTC") -> dt.datetime:
    """`2027-02-01 17:00`, `2027-02-01 17:00 Europe/Berlin`, `2027-02-01T17:00:00+01:00` -> naive UTC (nbgrader's
    convention). A time without a zone is in `zone`. Raises ValueError with the reason."""
    from dateutil import parser, tz

    parts = text.split()
    name = zone
    if len(parts) == 3:
        parts, name = parts[:2], parts[2]
    elif len(parts) not in (1, 2):
        raise ValueError(f"not a date and time: {text!r}")
    try:
        when = parser.isoparse(" ".join(parts).replace(" ", "T"))
    except ValueError:
        raise ValueError(f"not a date and time: {text!r} (write e.g. 2027-02-01 17:00 Europe/Berlin)") from None
    if when.tzinfo is None:
        if offset := re.fullmatch(r"([+-])(\d\d):?(\d\d)", name):  # +0100, -05:00 (gettz knows no such name)
            sign = 1 if offset[1] == "+" else -1
            zoneinfo = tz.tzoffset(None, sign * (int(offset[2]) * 3600 + int(offset[3]) * 60))
        else:
            zoneinfo = tz.UTC if name.upper() == "UTC" else tz.gettz(name)
        if zoneinfo is None:
            raise ValueError(f"unknown time zone {name!r} in {text!r}")
        when = when.replace(tzinfo=zoneinfo)
    elif len(text.split()) == 3:
        raise ValueError(f"two zones in {text!r}")
    return when.astimezone(tz.UTC).replace(tzinfo=None)


def _rows(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            if header != columns:
                raise TermError(f"{path.name}: the header must be {','.join(columns)}, not {','.join(header)}")
            rows = []
            for row in reader:
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue
                if None in row:
                    raise TermError(f"{path.name} line {reader.line_num}: more cells than columns")
                rows.append((reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items()}))
            return rows
    except UnicodeDecodeError:
        raise TermError(f"{path.name}: not UTF-8 text") from None


def load(course: Course, students: Iterable[str], assignments: Iterable[str]) -> Term:
    """duedates.csv and extensions.csv of the course root, checked against the known students and assignments.
    Raises TermError (one line, naming the file and line) on an instructor's mistake."""
    known_students, known_assignments = set(students), set(assignments)
    term = Term(zone=zone_of(course))
    try:
        to_utc("2000-01-01 00:00", term.zone)
    except ValueError:
        raise TermError(f"c.Exchange.timezone: unknown time zone {term.zone!r}") from None
    path = course.root / DUEDATES
    if path.exists():
        for line, row in _rows(path, ["assignment", "duedate"]):
            name = row["assignment"]
            if name not in known_assignments:
                raise TermError(f"{DUEDATES} line {line}: unknown assignment {name!r}")
            if name in term.duedates:
                raise TermError(f"{DUEDATES} line {line}: {name!r} has a due date already")
            try:
                term.duedates[name] = to_utc(row["duedate"], term.zone)
            except ValueError as exc:
                raise TermError(f"{DUEDATES} line {line}: {exc}") from None
    path = course.root / EXTENSIONS
    if path.exists():
        term.extensions = {}
        for line, row in _rows(path, ["student", "assignment", "hours"]):
            student, name = row["student"], row["assignment"]
            if student not in known_students:
                raise TermError(
                    f"{EXTENSIONS} line {line}: unknown student {student!r} (not in the gradebook nor in submitted/)"
                )
            if name not in known_assignments:
                raise TermError(f"{EXTENSIONS} line {line}: unknown assignment {name!r}")
            try:
                hours = float(row["hours"])
            except ValueError:
                hours = -1.0
            if not 0 <= hours <= 24 * 366:
                raise TermError(f"{EXTENSIONS} line {line}: hours must be a number of hours >= 0, not {row['hours']!r}")
            if (name, student) in term.extensions:
                raise TermError(f"{EXTENSIONS} line {line}: a second extension for {student} on {name}")
            term.extensions[name, student] = dt.timedelta(hours=hours)
    return term


def pick(times: Iterable[dt.datetime], deadline: dt.datetime | None) -> dt.datetime | None:
    """The resubmission rule: of a student's submission times, the latest at or before the deadline; when every
    one is late (or there is no deadline), the latest."""
    times = sorted(times)
    if not times:
        return None
    on_time = [t for t in times if deadline is None or t <= deadline]
    return (on_time or times)[-1]


def chooser(course: Course, assignment: str, students: Iterable[str]) -> Callable[[str, list[str]], str]:
    """The resubmission rule for `collect.select`: (student, recorded times) -> the time of the version to grade,
    with each student's deadline from the term files and the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    students = list(students)
    loaded: list[Term] = []
    due: dt.datetime | None = None
    extensions: dict[str, dt.timedelta | None] = {}
    with Gradebook(course.db_url) as gb:
        try:
            record = gb.find_assignment(assignment)
        except MissingEntry:
            pass
        else:
            due = record.duedate
            extensions = {s.student.id: s.extension for s in record.submissions}

    def term() -> Term:  # read when first needed: the students just collected are known by then
        if not loaded:
            kept = course.root / ".collected" / assignment
            collected = [p.name for p in kept.iterdir() if p.is_dir()] if kept.is_dir() else []
            loaded.append(load(course, [*students, *collected], course.assignments()))
        return loaded[0]

    def choose(student: str, stamps: list[str]) -> str:
        deadline = term().deadline(assignment, student, due, extensions.get(student))
        try:
            when = {to_utc(s, term().zone): s for s in stamps}
        except ValueError as exc:
            raise TermError(f"{assignment}: {student}: submission time: {exc}") from None
        chosen = pick(when, deadline)
        assert chosen is not None
        return when[chosen]

    return choose


def penalty_plugin(course: Course):
    """nbgrader's `AssignLatePenalties` configured from the course's nbgrader_config.py, with its plugin made."""
    from nbgrader.preprocessors import AssignLatePenalties

    try:
        assigner = AssignLatePenalties(config=course.config)
        assigner.init_plugin()
    except Exception as exc:
        raise TermError(f"c.AssignLatePenalties.plugin_class: cannot use it: {type(exc).__name__}: {exc}") from None
    return assigner


def apply(course: Course, gb, students: Iterable[str]) -> None:
    """Write the term into the gradebook: due dates, extensions, submission times from `make collect`, and each
    late notebook's penalty from the configured plugin (each notebook's penalty recomputed, so a changed
    extension or policy is reflected at the next export)."""
    from attention_course.grading.collect import submission_times

    term = load(course, students, {a.name for a in gb.assignments} | set(course.assignments()))
    assigner = penalty_plugin(course)
    for assignment in gb.assignments:
        if assignment.name in term.duedates:
            assignment.duedate = term.duedates[assignment.name]
        if assignment.duedate is None and any(a == assignment.name for a, _ in term.extensions or {}):
            raise TermError(f"{EXTENSIONS}: extensions for {assignment.name} but it has no due date ({DUEDATES})")
        times = submission_times(course, assignment.name)
        for sub in assignment.submissions:
            sid = sub.student.id
            if term.extensions is not None:
                sub.extension = term.extensions.get((assignment.name, sid))
            if assignment.duedate is None:
                sub.extension = None  # nbgrader cannot add an extension to no due date
            if sid in times:
                try:
                    sub.timestamp = to_utc(times[sid], term.zone)
                except ValueError as exc:
                    raise TermError(f".collected/{assignment.name}.json: {sid}: {exc}") from None
            seconds = sub.total_seconds_late
            for notebook in sub.notebooks:
                notebook.late_submission_penalty = None
                if seconds > 0:
                    try:
                        penalty = assigner.plugin_inst.late_submission_penalty(sid, notebook.score, seconds)
                    except ValueError as exc:
                        raise TermError(f"late-submission policy: {exc}") from None
                    if penalty is not None:
                        notebook.late_submission_penalty = assigner._check_late_penalty(notebook, penalty)
    gb.db.commit()
