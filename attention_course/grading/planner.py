"""Planning: one student's notebook to either a final state (nothing to run: no submission, missing, unreadable,
unchanged since its saved result) or a `Job` to run (its state, and a `RunSpec` in a scratch box)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import nbformat

from attention_course.grading import assemble, copies, intake, static_scan
from attention_course.grading.course import Course
from attention_course.grading.forked import run_forked
from attention_course.grading.ids import escape
from attention_course.grading.options import Options, grader_version
from attention_course.grading.records import NotebookState, NotebookStatus, RunSpec

log = logging.getLogger(__name__)

PLAN_SECONDS = 120  # reading, parsing and scanning one student's notebook
PLAN_MEMORY = 4 * 2**30  # beyond what the grader itself has mapped


@dataclass
class Job:
    """One student's notebook: its state, and what to run when it must be executed."""

    student: str
    notebook: str
    state_path: Path
    state: NotebookState
    run: RunSpec | None = None


def course_secret(course: Course) -> bytes:
    """The course's grading secret (random, created on first use, readable by the instructor only): test inputs
    in hidden blocks are seeded from it, so no student can predict them."""
    path = course.root / ".grading-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(os.urandom(32).hex())
    return bytes.fromhex(path.read_text().strip())


def judge_key(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, json.dumps(parts).encode(), hashlib.sha256).hexdigest()


def state_path(course: Course, student: str, assignment: str, notebook: str) -> Path:
    return course.autograded / student / assignment / f"{notebook}.grading.json"


def fingerprint(
    data: bytes, source: bytes, opts: Options, cell_timeout: int, trusted: bool, folder: Path | None = None
) -> str:
    """What a graded result depends on: the notebook, the other files of the submission folder, the source
    notebook, the grader's code and the limits."""
    h = hashlib.sha256()
    for part in (
        data,
        source,
        grader_version().encode(),
        str(cell_timeout).encode(),
        str(opts.notebook_timeout).encode(),
        str(trusted).encode(),
        str(opts.memory_bytes).encode(),
        str(opts.disk_bytes).encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    for path in intake.other_files(folder) if folder else []:
        h.update(str(path.relative_to(folder or path)).encode())
        with open(path, "rb") as fh:
            h.update(hashlib.sha256(fh.read(intake.MAX_COPY_BYTES)).digest())
    return h.hexdigest()


def _reusable(path: Path, fp: str) -> NotebookState | None:
    """The saved result at `path` when it was graded from exactly these inputs (`fp`), else None."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("fingerprint") != fp:
            return None
        state = NotebookState.from_json(data)
    except (ValueError, OSError) as exc:
        log.warning("%s: unreadable saved result, graded again: %s", path, exc)
        return None
    state.reused = True
    return state


def plan_notebook(
    course: Course,
    opts: Options,
    student: str,
    source_path: Path,
    expected: set[str],
    cell_timeout: int,
    scratch: Path,
    secret: bytes = b"",
) -> Job:
    assignment, name = opts.assignment, source_path.stem
    folder = course.submitted / student / assignment
    path_of_state = state_path(course, student, assignment, name)
    source_bytes = source_path.read_bytes()
    source_nb = nbformat.reads(source_bytes.decode(), as_version=4)
    points = assemble.points_of(source_nb)

    def final(status: str, why: str) -> Job:
        state = NotebookState.zero(student, assignment, name, points, status, why)
        state.notes, state.findings = notes, []
        if planned_fp:
            state.fingerprint, state.file = planned_fp
        return Job(student, name, path_of_state, state)

    notes: list[str] = []
    planned_fp: tuple[str, str] | None = None
    if not folder.is_dir():
        return final(NotebookStatus.NO_SUBMISSION, "no submission")
    path, note = intake.find_notebook(folder, name, expected)
    if path is None:
        return final(NotebookStatus.MISSING, note)
    trusted = student in opts.trust
    try:
        data = intake.safe_read(path, course.submitted / student)
    except assemble.Unreadable as exc:
        return final(NotebookStatus.UNREADABLE, str(exc))
    fp = fingerprint(data, source_bytes, opts, cell_timeout, trusted, folder)
    if not opts.force:
        old = _reusable(path_of_state, fp)
        if old is not None:
            return Job(student, name, path_of_state, old)
    planned_fp = (fp, str(path.relative_to(course.root)))
    if note:
        notes.append(note)
    try:
        submission = assemble.read_submission(data)
    except assemble.Unreadable as exc:
        return final(NotebookStatus.UNREADABLE, str(exc))
    assembled = assemble.assemble(source_nb, submission)
    if assembled.restored:
        notes.append("test/locked cells restored from the source: " + ", ".join(assembled.restored))
    if assembled.missing_answers:
        notes.append("answer cells not found: " + ", ".join(assembled.missing_answers))
    findings = []
    provided = copies.provided_elsewhere(source_path.parent.parent, assignment)
    for i, cell in enumerate(assembled.nb.cells):
        if cell.cell_type == "code" and cell.metadata.get("grading", {}).get("origin") in ("answer", "student"):
            where = cell.metadata["grading"].get("grade_id") or f"cell {i + 1}"
            findings += static_scan.tamper_findings(cell.source, where)
            findings += copies.copy_findings(cell.source, where, provided)
    for where, text in intake.code_files(folder):
        findings += static_scan.tamper_findings(text, where)
    # the static scan only flags code for the instructor to review: it never changes a score
    box = scratch / hashlib.sha256(f"{student}/{name}".encode()).hexdigest()[:12]  # short, whatever the id
    run = RunSpec(
        box=str(box),
        cell_timeout=cell_timeout,
        notebook_timeout=opts.notebook_timeout,
        limits=opts.limits(),
        student_names=sorted(assemble.student_names(source_nb)),
        judge_key=judge_key(secret, assignment, student, name, fp),
    )
    intake.copy_folder(folder, run.work_dir)
    nbformat.write(assembled.nb, str(run.notebook))
    state = NotebookState(
        student,
        assignment,
        name,
        notes=notes,
        findings=findings,
        fingerprint=fp,
        file=planned_fp[1],
        reviewed=trusted,
        tests=assembled.tests,
        points=assembled.points,
    )
    return Job(student, name, path_of_state, state, run=run)


def plan_isolated(
    course: Course,
    opts: Options,
    student: str,
    source_path: Path,
    expected: set[str],
    cell_timeout: int,
    scratch: Path,
    secret: bytes,
) -> Job:
    """`plan_notebook` in a forked child with a time and memory limit: a notebook that makes reading, parsing
    or scanning fail, explode or hang (deep JSON, a huge expression) marks that student alone as unreadable."""
    name = source_path.stem
    copies.provided_elsewhere(source_path.parent.parent, opts.assignment)  # read once here; children inherit it

    def plan() -> str:
        job = plan_notebook(course, opts, student, source_path, expected, cell_timeout, scratch, secret)
        run = job.run.to_json() if job.run else None
        return json.dumps({"state": job.state.to_json(), "reused": job.state.reused, "run": run})

    outcome = run_forked(plan, PLAN_SECONDS, PLAN_MEMORY)
    if outcome.value is not None:
        payload = json.loads(outcome.value)
        state = NotebookState.from_json(payload["state"])
        state.reused = payload["reused"] is True  # an unchanged saved result: not saved (nor its page rendered) again
        run = RunSpec.from_json(payload["run"]) if payload["run"] else None
        return Job(student, name, state_path(course, student, opts.assignment, name), state, run)
    if outcome.error:
        why = f"{outcome.error[0]}: {outcome.error[1][:200]}"
    elif outcome.signal == signal.SIGALRM:
        why = f"reading it took longer than {PLAN_SECONDS} s"
    elif outcome.signal:
        why = f"killed by signal {outcome.signal}"
    else:
        why = "no result"
    log.info("%s/%s: planning failed: %s", student, name, why)
    points = assemble.points_of(nbformat.read(str(source_path), as_version=4))
    why = escape(f"the notebook could not be read within the grader's limits ({why})", 300)
    state = NotebookState.zero(student, opts.assignment, name, points, NotebookStatus.UNREADABLE, why)
    return Job(student, name, state_path(course, student, opts.assignment, name), state)
