"""`collect`: an LMS bulk download (zip) into nbgrader's `submitted/<student>/<assignment>/`.

What nbgrader's `zip_collect` does, with the two LMS naming schemes built in and every file it could not place
reported. Recognised names (the part after the prefix is the student's own file name):

- Canvas ("Download Submissions"): `<login>_[LATE_]<user id>_<submission id>_<file>`, e.g.
  `doejane_LATE_12345_6789012_attention-pooling-1.ipynb` -> `submitted/doejane/<assignment>/attention-pooling.ipynb`
  (Canvas adds `-1`, `-2` to resubmitted files: removed when what is left is a notebook of the assignment).
- Moodle ("Download all submissions"): `<Full Name>_<participant id>_assignsubmission_file_[/]<file>`, e.g.
  `Jane Doe_4242_assignsubmission_file_/attention-pooling.ipynb`
  -> `submitted/<id>/<assignment>/attention-pooling.ipynb`,
  where <id> is the roster student (gradebook first and last name) with that full name, else the name written
  as a slug (`jane-doe`, reported).
- Anything else: `--pattern REGEX` with named groups `student_id` and `file`.

Archives are read defensively: no absolute paths or `..`, no links, at most 50 MB per file and 2 GB in all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from attention_course.grading.ids import valid_id

CANVAS = re.compile(
    r"^(?P<student_id>[A-Za-z0-9.\-]+?)_(?P<late>LATE_)?(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$"
)
MOODLE = re.compile(r"^(?P<fullname>[^/_]+)_(?P<participant>\d+)_assignsubmission_(?:file|onlinetext)_/?(?P<file>.+)$")
MAX_FILE = 50 * 2**20
MAX_TOTAL = 2 * 2**30


@dataclass
class Report:
    placed: list[tuple[str, str]] = field(default_factory=list)  # (zip entry, destination)
    unplaced: list[tuple[str, str]] = field(default_factory=list)  # (zip entry, why)
    notes: list[str] = field(default_factory=list)
    times: dict[str, str] = field(default_factory=dict)  # student -> latest file time in the zip
    lms_ids: dict[str, dict[str, str]] = field(default_factory=dict)  # student -> {"canvas": user id} or moodle's


def slug(name: str) -> str:
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def collect(
    course,
    assignment: str,
    archive: Path,
    pattern: str | None = None,
    names: dict | None = None,
    choose: Callable[[str, list[str]], str] | None = None,
) -> Report:
    """Extract `archive`: each student's files are kept as a version (`.collected/<assignment>/<student>/<time>/`,
    the time being the latest file time of theirs in the zip) and the version `choose(student, times)` picks
    (default: the latest; `make collect` passes the resubmission rule of term.py) goes to `submitted/`.
    `names`: full name (lower case) -> student id, from the roster."""
    report = Report()
    custom = re.compile(pattern) if pattern else None
    expected = {p.name for p in course.source_notebooks(assignment)}
    names = names or {}
    total = 0
    files: dict[str, set[PurePosixPath]] = {}  # student -> files of this download
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            entry = info.filename
            if info.is_dir():
                continue
            path = PurePosixPath(entry)
            if path.is_absolute() or ".." in path.parts or "\\" in entry:
                report.unplaced.append((entry, "unsafe path"))
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                report.unplaced.append((entry, "symbolic link"))
                continue
            if path.name.startswith(".") or "__MACOSX" in path.parts:
                report.unplaced.append((entry, "hidden or system file"))
                continue
            if info.file_size > MAX_FILE or total + info.file_size > MAX_TOTAL:
                report.unplaced.append((entry, "too large"))
                continue
            student, filename, why = None, None, "file name matches no known LMS pattern"
            lms: tuple[str, str] | None = None
            match = custom.match(entry) if custom else None
            if match:
                student, filename = match.group("student_id"), match.group("file")
            elif m := next((m for k in range(len(path.parts)) if (m := MOODLE.match("/".join(path.parts[k:])))), None):
                fullname = " ".join(m.group("fullname").split())
                student = names.get(fullname.lower()) or names.get(" ".join(reversed(fullname.split())).lower())
                if not student:
                    student = slug(fullname)
                    report.notes.append(f"{entry}: '{fullname}' is not in the roster: placed as '{student}'")
                filename = m.group("file")
                lms = ("moodle", m.group("participant"))
            elif m := CANVAS.match(path.name):
                student, filename = m.group("student_id"), m.group("file")
                lms = ("canvas", m.group("user"))
                stem = PurePosixPath(filename)
                base = re.sub(r"-\d+$", "", stem.stem) + stem.suffix
                if filename not in expected and base in expected:
                    filename = base
                if m.group("late"):
                    report.notes.append(f"{entry}: submitted late (Canvas LATE flag)")
            if not student or not filename:
                report.unplaced.append((entry, why))
                continue
            if not valid_id(student):
                report.unplaced.append((entry, f"unusable student id {student!r}"))
                continue
            rel = PurePosixPath(filename)
            if rel.is_absolute() or ".." in rel.parts:
                report.unplaced.append((entry, "unsafe path"))
                continue
            staging = versions_dir(course, assignment, student) / f".incoming-{os.getpid()}"
            if student not in files:
                if staging.exists():
                    shutil.rmtree(staging)
                files[student] = set()
            dest = staging / Path(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink():
                dest.unlink()
            if rel in files[student]:
                report.notes.append(f"{entry}: replaces an earlier file for {student}/{assignment}/{rel}")
            files[student].add(rel)
            if lms:
                report.lms_ids.setdefault(student, {})[lms[0]] = lms[1]
            data = zf.read(info)
            total += len(data)
            dest.write_bytes(data)
            submitted = course.submitted / student / assignment / Path(*rel.parts)
            report.placed.append((entry, str(submitted.relative_to(course.root))))
            year, month, day, hour, minute, second = info.date_time
            stamp = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
            report.times[student] = max(report.times.get(student, stamp), stamp)
    record_lms_ids(course, report.lms_ids)
    for student in files:  # each student's files of this download become one version, named by its time
        keep_unversioned(course, assignment, student)
        version = versions_dir(course, assignment, student) / folder_name(report.times[student])
        if version.exists():  # the same download collected again
            shutil.rmtree(version)
        os.replace(versions_dir(course, assignment, student) / f".incoming-{os.getpid()}", version)
    for student in files:
        graded = select(course, assignment, student, choose, force=True)
        if graded != report.times[student]:
            report.notes.append(
                f"{student}: the submission of {report.times[student]} is kept in "
                f"{versions_dir(course, assignment, student).relative_to(course.root)}/; graded: the one of {graded} "
                "(the latest before the deadline)"
            )
    return report


def folder_name(stamp: str) -> str:
    """`2026-11-30 23:59:00` -> `2026-11-30T23-59-00` (a version's folder)."""
    return stamp.replace(" ", "T").replace(":", "-")


def stamp_of(folder: str) -> str | None:
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)T(\d\d)-(\d\d)-(\d\d)", folder)
    return f"{m[1]} {m[2]}:{m[3]}:{m[4]}" if m else None


def versions_dir(course, assignment: str, student: str) -> Path:
    """Every collected submission of a student, one folder per submission time (students cannot write here)."""
    return course.root / ".collected" / assignment / student


def versions(course, assignment: str, student: str) -> list[str]:
    """The submission times of a student's collected versions, oldest first."""
    folder = versions_dir(course, assignment, student)
    found = [stamp_of(p.name) for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return sorted(s for s in found if s)


def keep_unversioned(course, assignment: str, student: str) -> None:
    """A submission already in submitted/ is never lost: collected before versions were kept, it becomes a version
    (with its recorded time); placed there by hand (no recorded time), it is kept as
    `.collected/<assignment>/<student>/by-hand-<n>/`, which the resubmission rule never picks."""
    current = course.submitted / student / assignment
    if not current.is_dir() or current.is_symlink():
        return
    stamp = submission_times(course, assignment).get(student)
    kept = versions_dir(course, assignment, student)
    if stamp and stamp not in versions(course, assignment, student):
        shutil.copytree(current, kept / folder_name(stamp), symlinks=True)
    elif not stamp and any(current.iterdir()):
        n = 1
        while (kept / f"by-hand-{n}").exists():
            n += 1
        shutil.copytree(current, kept / f"by-hand-{n}", symlinks=True)


def latest(student: str, stamps: list[str]) -> str:
    return max(stamps)


def select(
    course,
    assignment: str,
    student: str,
    choose: Callable[[str, list[str]], str] | None = None,
    force: bool = False,
) -> str | None:
    """Put the version `choose(student, times)` picks (default: the latest) into `submitted/<student>/<assignment>/`
    and record its time; the others stay in `.collected/`. Returns the chosen time (None: no versions kept)."""
    stamps = versions(course, assignment, student)
    if not stamps:
        return None
    chosen = (choose or latest)(student, stamps)
    dest = course.submitted / student / assignment
    if not force and submission_times(course, assignment).get(student) == chosen and dest.is_dir():
        return chosen
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(versions_dir(course, assignment, student) / folder_name(chosen), dest, symlinks=True)
    record_times(course, assignment, {student: chosen})
    return chosen


def reselect(course, assignment: str, choose: Callable[[str, list[str]], str]) -> list[str]:
    """Apply the resubmission rule again to every student with kept versions (a due date or extension may have
    changed since `make collect`); the students whose graded submission changed."""
    folder = course.root / ".collected" / assignment
    changed = []
    for student in sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        before = submission_times(course, assignment).get(student)
        if select(course, assignment, student, choose) != before:
            changed.append(student)
    return changed


def record_times(course, assignment: str, times: dict[str, str]) -> None:
    """Submission times from the LMS download, kept where students cannot write (`.collected/`): the grader
    takes the gradebook's timestamp from here, never from a `timestamp.txt` in a submission folder."""
    from attention_course.grading.course import atomic_write

    known = submission_times(course, assignment)
    known.update(times)
    atomic_write(times_file(course, assignment), json.dumps(known, indent=1, sort_keys=True))


def record_lms_ids(course, ids: dict[str, dict[str, str]]) -> None:
    """The LMS's own number of each student, from the download's file names (Canvas: the user id; Moodle: the
    participant id), kept for the LMS grade files (lms.py) in `.collected/_lms-ids.json` (no assignment id starts
    with `_`)."""
    from attention_course.grading.course import atomic_write

    known = lms_ids(course)
    for student, found in ids.items():
        known.setdefault(student, {}).update(found)
    atomic_write(course.root / ".collected" / "_lms-ids.json", json.dumps(known, indent=1, sort_keys=True))


def lms_ids(course) -> dict[str, dict[str, str]]:
    """student -> {"canvas": user id, "moodle": participant id}, as `make collect` recorded them."""
    try:
        data = json.loads((course.root / ".collected" / "_lms-ids.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: {a: b for a, b in v.items() if isinstance(a, str) and isinstance(b, str)}
        for k, v in data.items()
        if isinstance(k, str) and isinstance(v, dict)
    }


def times_file(course, assignment: str) -> Path:
    """Where `make collect` keeps the submission times of an assignment (students cannot write there)."""
    return course.root / ".collected" / f"{assignment}.json"


def submission_times(course, assignment: str) -> dict[str, str]:
    """student -> submission time recorded by `make collect` (from the LMS download), if any."""
    try:
        data = json.loads(times_file(course, assignment).read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    )


def roster_names(db_url: str) -> dict[str, str]:
    from nbgrader.api import Gradebook

    names = {}
    with Gradebook(db_url) as gb:
        for s in gb.students:
            if s.first_name or s.last_name:
                names[f"{s.first_name or ''} {s.last_name or ''}".strip().lower()] = s.id
    return names
