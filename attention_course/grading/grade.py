"""`grade`: every submission of one assignment, in parallel sandboxes, scores into the gradebook.

Who does what. The parent process (this module's `grade`) plans every notebook (each in a forked child with
limits), keeps the course secret, and alone writes the gradebook and `grades.csv` (gradebook.py, export.py).
Local workers are trusted processes outside the sandbox: each drives one sandboxed kernel at a time, runs its
test cells in the judge (runner.py, judge.py), and saves that notebook's state file, executed notebook and
feedback page. Per student and notebook the state file `autograded/<student>/<assignment>/<notebook>.grading.json`
is written atomically when its grading is complete: a rerun reuses it when neither the submission nor the
source changed (idempotent, resumable), and rewrites the gradebook from it, so an interrupted run loses nothing.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import hmac
import json
import multiprocessing
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from attention_course.grading import assemble as asm
from attention_course.grading import copies, static_scan
from attention_course.grading.course import Course, atomic_write
from attention_course.grading.gradebook import record, register_assignment, roster
from attention_course.grading.ids import escape
from attention_course.grading.records import CellGrade, CellStatus, RunStatus, overall
from attention_course.grading.records import NotebookStatus as Status
from attention_course.grading.sandbox import NOTEBOOK_SECONDS, Limits

GRADER_VERSION = "3"  # 2: test cells judged outside the kernel; 3: trusted text only, inert feedback
MAX_COPY_BYTES = 50 * 2**20  # other files of a submission folder copied into the sandbox
MAX_NOTEBOOK_BYTES = 20 * 2**20
COMPILED = (".so", ".pyd", ".pyc", ".pyo", ".dylib", ".dll")


@dataclass
class Options:
    assignment: str
    jobs: int = 0
    force: bool = False
    trust: set[str] = field(default_factory=set)  # students whose review flags the instructor cleared
    cell_timeout: int | None = None
    notebook_timeout: int = NOTEBOOK_SECONDS
    memory_bytes: int = Limits.memory_bytes  # per sandbox (cgroup)
    disk_bytes: int = Limits.disk_bytes  # writable space per sandbox (its folder, and /tmp)
    progress: bool = True
    feedback: bool = True
    scheduler: str | None = None  # a Dask scheduler's address: grade on that cluster (cluster.py)
    judge_address: str | None = None  # HOST[:PORT] the judge service listens on, reachable from the workers
    tls: dict | None = None  # {"ca", "cert", "key"}: the Dask client's TLS files (else Dask's config)


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


# --- finding submissions --------------------------------------------------------------------------------


def link_in(path: Path, below: Path) -> str | None:
    """The first part of `path` below `below` that is a symbolic link (never followed), else None."""
    current = below
    for part in path.relative_to(below).parts:
        current = current / part
        if current.is_symlink():
            return str(current.relative_to(below))
    return None


def _safe_read(path: Path, inside: Path) -> bytes:
    """Bytes of a submitted file, refusing links anywhere on its path below submitted/ (a link to solutions/
    would be read by the trusted grader)."""
    real = Path(os.path.realpath(path))
    link = link_in(path, inside.parent)
    if link or not str(real).startswith(str(Path(os.path.realpath(inside))) + os.sep):
        raise asm.Unreadable(
            f"{escape(link or path.name, 80)} is a link: links in submitted/ are refused, not followed"
        )
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise asm.Unreadable(f"{path.name} is not a regular file")
        data = fh.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise asm.Unreadable(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    return data


def find_notebook(folder: Path, name: str, expected: set[str]) -> tuple[Path | None, str]:
    """The submitted file for notebook `name`; when misnamed, the only other notebook there (with a note)."""
    exact = folder / f"{name}.ipynb"
    if exact.exists() or exact.is_symlink():
        return exact, ""
    found = sorted(
        Path(d) / f
        for d, dirs, files in os.walk(folder, followlinks=False)
        for f in files
        if f.endswith(".ipynb") and ".ipynb_checkpoints" not in Path(d).parts
    )
    nested = [p for p in found if p.name == f"{name}.ipynb"]
    if len(nested) == 1:
        return nested[0], f"found in {nested[0].relative_to(folder).parent}/"
    others = [p for p in found if p.stem not in expected]
    if len(others) == 1:
        return others[0], f"graded {others[0].relative_to(folder)} as {name}.ipynb (misnamed)"
    if others:
        return None, f"missing {name}.ipynb (found {', '.join(str(p.relative_to(folder)) for p in others)}: ambiguous)"
    if folder.exists() and any(folder.iterdir()):
        names = ", ".join(sorted(p.name for p in folder.iterdir())[:5])
        return None, f"missing {name}.ipynb (folder holds: {names})"
    return None, f"missing {name}.ipynb (empty folder)"


# --- one notebook ---------------------------------------------------------------------------------------


def fingerprint(
    data: bytes, source: bytes, opts: Options, cell_timeout: int, trusted: bool, folder: Path | None = None
) -> str:
    """What a graded result depends on: the notebook, the other files of the submission folder, the source
    notebook, the grader's version and the limits."""
    h = hashlib.sha256()
    for part in (
        data,
        source,
        GRADER_VERSION.encode(),
        str(cell_timeout).encode(),
        str(opts.notebook_timeout).encode(),
        str(trusted).encode(),
        str(opts.memory_bytes).encode(),
        str(opts.disk_bytes).encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    for dirpath, _dirnames, filenames in sorted(os.walk(folder, followlinks=False)) if folder else []:
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            if path.suffix != ".ipynb" and path.is_file() and not path.is_symlink():
                h.update(str(path.relative_to(folder)).encode())
                with open(path, "rb") as fh:
                    h.update(hashlib.sha256(fh.read(MAX_COPY_BYTES)).digest())
    return h.hexdigest()


def zero_cells(points: dict[str, float], why: str) -> dict:
    return {gid: CellGrade.zero(pts, why).to_json() for gid, pts in points.items()}


def score_cells(tests: dict[str, int], points: dict[str, float], result: dict) -> dict:
    """Points only for test cells the kernel reported as completed without error; anything else (error,
    timeout, dead kernel, never reached) earns 0."""
    cells = {}
    for gid, index in tests.items():
        info = result["cells"][index] if index < len(result["cells"]) else {"status": RunStatus.NOT_RUN}
        status = info.get("status", RunStatus.NOT_RUN)
        if status == RunStatus.OK:
            cells[gid] = CellGrade(points[gid], points[gid], CellStatus.PASSED).to_json()
            continue
        if status == RunStatus.ERROR:
            why = escape(info.get("ename", "error"), 60)
            if info.get("evalue"):
                why += ": " + escape(info["evalue"].strip().splitlines()[0] if info["evalue"].strip() else "", 160)
        elif status == RunStatus.TIMEOUT:
            why = "timed out"
        elif status == RunStatus.NOT_RUN:  # the kernel died or the notebook time ran out before this test
            why = f"not run ({result.get('died') or status})"
        else:
            why = status
        try:
            failed = CellStatus(status)
        except ValueError:  # a status the runner does not produce: the test did not pass
            failed = CellStatus.ERROR
        cells[gid] = CellGrade(0.0, points[gid], failed, why).to_json()
    return cells


def summarise(state: dict) -> None:
    state["score"] = round(sum(c["score"] for c in state["cells"].values()), 4)
    state["max_score"] = round(sum(c["max_score"] for c in state["cells"].values()), 4)


@dataclass
class Job:
    student: str
    notebook: str
    state_path: Path
    state: dict
    run: dict | None = None  # runner job, when the notebook must be executed


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
    state_path = course.autograded / student / assignment / f"{name}.grading.json"
    source_bytes = source_path.read_bytes()
    source_nb = nbformat.reads(source_bytes.decode(), as_version=4)
    points = asm.points_of(source_nb)
    base = {"student": student, "assignment": assignment, "notebook": name, "notes": [], "findings": []}
    if not folder.is_dir():
        state = {
            **base,
            "status": Status.NO_SUBMISSION,
            "reason": "no submission",
            "cells": zero_cells(points, "no submission"),
        }
        summarise(state)
        return Job(student, name, state_path, state)
    path, note = find_notebook(folder, name, expected)
    if path is None:
        state = {**base, "status": Status.MISSING, "reason": note, "cells": zero_cells(points, note)}
        summarise(state)
        return Job(student, name, state_path, state)
    trusted = student in opts.trust
    try:
        data = _safe_read(path, course.submitted / student)
    except asm.Unreadable as exc:
        state = {**base, "status": Status.UNREADABLE, "reason": str(exc), "cells": zero_cells(points, str(exc))}
        summarise(state)
        return Job(student, name, state_path, state)
    fp = fingerprint(data, source_bytes, opts, cell_timeout, trusted, folder)
    if not opts.force and state_path.exists():
        try:
            old = json.loads(state_path.read_text())
            if old.get("fingerprint") == fp:
                old["reused"] = True
                return Job(student, name, state_path, old)
        except (ValueError, OSError):
            pass
    base.update(fingerprint=fp, file=str(path.relative_to(course.root)))
    if note:
        base["notes"].append(note)
    try:
        submission = asm.read_submission(data)
    except asm.Unreadable as exc:
        state = {**base, "status": Status.UNREADABLE, "reason": str(exc), "cells": zero_cells(points, str(exc))}
        summarise(state)
        return Job(student, name, state_path, state)
    assembled = asm.assemble(source_nb, submission)
    if assembled.restored:
        base["notes"].append("test/locked cells restored from the source: " + ", ".join(assembled.restored))
    if assembled.missing_answers:
        base["notes"].append("answer cells not found: " + ", ".join(assembled.missing_answers))
    findings = []
    provided = copies.provided_elsewhere(source_path.parent.parent, assignment)
    for i, cell in enumerate(assembled.nb.cells):
        if cell.cell_type == "code" and cell.metadata.get("grading", {}).get("origin") in ("answer", "student"):
            where = cell.metadata["grading"].get("grade_id") or f"cell {i + 1}"
            findings += static_scan.tamper_findings(cell.source, where)
            findings += copies.copy_findings(cell.source, where, provided)
    # code files next to the notebook run too when imported (sitecustomize.py even at start): check them;
    # compiled code cannot be checked, so it is never copied into the sandbox
    for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False):
        for fname in filenames:
            src = Path(dirpath) / fname
            if src.suffix == ".py" and src.is_file() and not src.is_symlink():
                text = src.read_bytes()[:MAX_NOTEBOOK_BYTES].decode("utf-8", "replace")
                findings += static_scan.tamper_findings(text, str(src.relative_to(folder)))
    # the static scan only flags code for the instructor to review: it never changes a score
    base["findings"] = findings
    base["reviewed"] = trusted
    # a scratch copy of the student's own folder (regular files only, never links) for the sandbox
    box = scratch / hashlib.sha256(f"{student}/{name}".encode()).hexdigest()[:12]  # short, whatever the id
    work = box / "work"
    ipc = box / "ipc"
    shutil.rmtree(work.parent, ignore_errors=True)
    work.mkdir(parents=True)
    copied = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for fname in filenames:
            src = Path(dirpath) / fname
            if src.is_symlink() or not src.is_file() or src.suffix in (".ipynb", ".pth") + COMPILED:
                continue
            with open(src, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    continue
            size = src.stat().st_size
            if copied + size > MAX_COPY_BYTES:
                continue
            dest = work / src.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            copied += size
    nb_in = work.parent / "assembled.ipynb"
    nbformat.write(assembled.nb, str(nb_in))
    run = {
        "notebook": str(nb_in),
        "executed": str(work.parent / "executed.ipynb"),
        "result": str(work.parent / "result.json"),
        "package_dir": str(Path(asm.__file__).resolve().parents[1]),
        "work_dir": str(work),
        "ipc_dir": str(ipc),
        "cell_timeout": cell_timeout,
        "notebook_timeout": opts.notebook_timeout,
        "limits": {"memory_bytes": opts.memory_bytes, "disk_bytes": opts.disk_bytes},
        "student_names": sorted(asm.student_names(source_nb)),
        "judge_key": judge_key(secret, assignment, student, name, fp),
    }
    state = {**base, "status": Status.PENDING, "tests": assembled.tests, "points": assembled.points}
    return Job(student, name, state_path, state, run=run)


def finish(state: dict, result: dict | None, error: str | None) -> dict:
    if error or result is None:
        state.update(
            status=Status.GRADER_ERROR,
            reason=f"grader error (will be retried): {error}",
            cells=zero_cells(state["points"], "grader error"),
        )
        summarise(state)
        return state
    cells = score_cells(state["tests"], state["points"], result)
    state.update(cells=cells, died=result.get("died"), seconds=result.get("seconds"))
    by_why: dict[str, list[str]] = {}
    for gid, c in cells.items():
        if c["score"] < c["max_score"]:
            by_why.setdefault(c["why"][:100], []).append(gid)
    lost = [f"{', '.join(gids)}: {why}" for why, gids in by_why.items()]
    parts = []
    if result.get("died"):
        parts.append(result["died"])
    truncated = [i for i, c in enumerate(result["cells"]) if c.get("truncated")]
    if truncated:
        parts.append(f"output truncated in {len(truncated)} cell(s)")
    parts += lost[:4] + ([f"+{len(lost) - 4} more"] if len(lost) > 4 else [])
    if state.get("findings") and not state.get("reviewed"):
        parts.append("flagged for review (score unaffected): " + escape("; ".join(state["findings"][:3]), 200))
    state.update(status=Status.GRADED, reason="; ".join(parts) if parts else "all tests passed")
    summarise(state)
    return state


PLAN_SECONDS = 120  # reading, parsing and scanning one student's notebook
RENDER_SECONDS = 300  # saving a result (its feedback page has its own, shorter limit)
PLAN_MEMORY = 4 * 2**30  # beyond what the grader itself has mapped


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
    import resource
    import signal

    name = source_path.stem
    state_path = course.autograded / student / opts.assignment / f"{name}.grading.json"
    copies.provided_elsewhere(source_path.parent.parent, opts.assignment)  # read once here; children inherit it
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plan, send the job as JSON, exit without cleanup
        code = 1
        try:
            os.close(read_fd)
            mapped = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (mapped + PLAN_MEMORY, mapped + PLAN_MEMORY))
            signal.alarm(PLAN_SECONDS)
            job = plan_notebook(course, opts, student, source_path, expected, cell_timeout, scratch, secret)
            payload = {"state": job.state, "run": job.run}
            code = 0
        except BaseException as exc:
            payload = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        try:
            with os.fdopen(write_fd, "w") as fh:
                fh.write(json.dumps(payload))
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    try:
        payload = json.loads(data)
    except ValueError:
        why = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else "no result"
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
            why = f"reading it took longer than {PLAN_SECONDS} s"
        payload = {"error": why}
    if "error" in payload:
        source_nb = nbformat.read(str(source_path), as_version=4)
        points = asm.points_of(source_nb)
        why = escape(f"the notebook could not be read within the grader's limits ({payload['error']})", 300)
        state = {
            "student": student,
            "assignment": opts.assignment,
            "notebook": name,
            "notes": [],
            "findings": [],
            "status": Status.UNREADABLE,
            "reason": why,
            "cells": zero_cells(points, why),
        }
        summarise(state)
        return Job(student, name, state_path, state)
    return Job(student, name, state_path, payload["state"], run=payload["run"])


def submission_times(course: Course, assignment: str) -> dict[str, str]:
    """student -> submission time recorded by `make collect` (from the LMS download), if any."""
    path = course.root / ".collected" / f"{assignment}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    )


# --- the whole class ------------------------------------------------------------------------------------

_UID: tuple[int, int] | None = None  # this worker's leased sandbox uid and the lock that holds it


def _init_worker() -> None:
    global _UID
    from attention_course.grading.sandbox import lease_uid

    _UID = lease_uid()
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    from attention_course.grading import feedback

    feedback.warm()  # every worker: the children that render its pages inherit the compiled templates


FEEDBACK_SECONDS = int(os.environ.get("GRADING_FEEDBACK_SECONDS", 120))  # one feedback page (tests lower it)
FEEDBACK_MEMORY = 4 * 2**30  # beyond what the worker has mapped


def writable(value):
    """`value` (a notebook or state, JSON-like) with every string encodable as UTF-8: a lone surrogate printed by
    the student (`print('\\ud800')`) becomes '?' instead of failing the save."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        for key in list(value):
            value[key] = writable(value[key])
        return value
    if isinstance(value, list):
        value[:] = [writable(v) for v in value]
    return value


def isolated(fn, seconds: int, memory: int = FEEDBACK_MEMORY) -> str | None:
    """`fn()` in a forked child with a time and memory limit (rendering a hostile page may explode or hang):
    None when it finished, else why not."""
    import resource
    import signal

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        why = ""
        try:
            os.close(read_fd)
            mapped = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (mapped + memory, mapped + memory))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(seconds)
            fn()
            code = 0
        except BaseException as exc:
            why = f"{type(exc).__name__}: {exc}"[:200]
        try:
            os.write(write_fd, why.encode("utf-8", "replace"))
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + seconds + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:  # the alarm did not end it (blocked signal): killed
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.05)
    with os.fdopen(read_fd, "rb") as fh:
        why = fh.read(400).decode("utf-8", "replace")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"it took longer than {seconds} s" if sig in (signal.SIGALRM, signal.SIGKILL) else f"signal {sig}"
    return escape(why or "it failed", 200)


def save(course: Course, state: dict, state_path: Path, executed: Path | None, feedback: bool) -> None:
    """The state file (atomically: it marks the notebook done), the executed notebook, the feedback page.

    A feedback page that cannot be rendered within its limits (time, memory: a huge or odd notebook) is
    replaced by the score table and the reason, with a note: the score stays the judge's, and the student is
    graded. Any other failure raises: the caller makes it this student's grader error (retried next run)."""
    from attention_course.grading import feedback as fb

    target = state_path.with_name(f"{state['notebook']}.ipynb")
    state_path.parent.mkdir(parents=True, exist_ok=True)
    if executed and executed.exists():
        shutil.copyfile(executed, target)
    writable(state)
    if feedback:
        shown = target if executed and target.exists() else None
        if shown is None:  # the score table alone (no notebook of the student's): small, rendered here
            why = None
            fb.write_feedback(course, state, None)
        else:
            why = isolated(lambda: fb.write_feedback(course, state, shown), FEEDBACK_SECONDS)
        if why is not None:
            state.setdefault("notes", []).append(f"feedback reduced to the score table: rendering failed ({why})")
            fb.write_reduced(course, state)
    atomic_write(state_path, json.dumps(state, indent=1))


def save_failed(state: dict, why: str) -> dict:
    """The student's grader error when saving their result failed (nothing is saved: the next run retries)."""
    if "points" in state:
        return finish(state, None, why)
    state.update(
        status=Status.GRADER_ERROR,
        reason=f"grader error (will be retried): {escape(why, 300)}",
        cells={gid: CellGrade.zero(c["max_score"], "grader error").to_json() for gid, c in state["cells"].items()},
    )
    summarise(state)
    return state


def _warm() -> int:
    """Imports a worker needs, done while the parent plans (so they overlap)."""
    from nbconvert import HTMLExporter  # noqa: F401

    from attention_course.grading import feedback, runner  # noqa: F401

    return _UID[0] if _UID else 0


_COURSES: dict[str, Course] = {}


def _run(run: dict, state: dict, state_path: str, root: str, feedback: bool) -> dict:
    """In a worker process (trusted, outside the sandbox): execute, score, save; returns the final state."""
    import asyncio
    import traceback

    from attention_course.grading import runner

    run = {**run, "uid": _UID[0]}
    Path(run["result"]).with_name("started").touch()  # if this worker dies now, this job is a suspect (_Recovery)
    result, error = None, None
    try:
        result = asyncio.run(asyncio.wait_for(runner.execute(run), run["notebook_timeout"] + 180))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300] + "\n" + traceback.format_exc()[-800:]
    return _conclude(run, state, state_path, root, feedback, result, error)


def _conclude(
    run: dict, state: dict, state_path: str, root: str, feedback: bool, result: dict | None, error: str | None
) -> dict:
    """Score and save one executed notebook (in a local worker, or in this process for a cluster's result)."""
    if result is not None:
        nb = result.pop("notebook")
        if str(result.get("died") or "").startswith("kernel could not run"):
            result, error = None, result["died"]
    state = finish(state, result, error)
    if state["status"] != Status.GRADER_ERROR:
        import signal

        def too_slow(signum, frame):
            raise TimeoutError(f"saving the result took longer than {RENDER_SECONDS} s")

        course = _COURSES.setdefault(root, Course.load(root))
        previous = signal.signal(signal.SIGALRM, too_slow)
        signal.alarm(RENDER_SECONDS)  # saving one student's result is bounded too (its page: FEEDBACK_SECONDS)
        try:
            nbformat.write(writable(nb), run["executed"])
            save(course, state, Path(state_path), Path(run["executed"]), feedback)
            state["saved"] = True
        except Exception as exc:  # this student's grader error, retried next run; the class goes on
            state = finish(state, None, f"saving the result failed: {type(exc).__name__}: {exc}"[:300])
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    return state


def _conclude_timed(*args) -> tuple[dict, float]:
    """`_conclude` in a saver process of a cluster run; with the seconds it took."""
    start = time.monotonic()
    return _conclude(*args), time.monotonic() - start


class LocalPool:
    """This machine: a forkserver process pool, each worker with its leased sandbox uid (the default)."""

    def __init__(self, jobs_n: int):
        ctx = multiprocessing.get_context("forkserver")
        self.pool = cf.ProcessPoolExecutor(max_workers=jobs_n, mp_context=ctx, initializer=_init_worker)
        self.jobs_n = jobs_n

    def describe(self) -> str:
        return f"{self.jobs_n} sandboxed worker(s)"

    def warm(self) -> None:
        for _ in range(self.jobs_n):
            self.pool.submit(_warm)  # the workers import what they need while the parent plans

    def submit(self, job: Job, course: Course, opts: Options):
        return self.pool.submit(_run, job.run, job.state, str(job.state_path), str(course.root), opts.feedback)

    def as_completed(self, futures):
        return cf.as_completed(futures)

    def state(self, future, job: Job) -> dict:
        return future.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def broken(self, exc: BaseException) -> bool:
        """Whether `exc` says a worker process died (a judge killed, e.g. out of memory): the pool is broken."""
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(exc, BrokenProcessPool)

    def restart(self) -> None:
        """A fresh pool in place of a broken one (its dead worker's uid lease is released with the process)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        ctx = multiprocessing.get_context("forkserver")
        self.pool = cf.ProcessPoolExecutor(max_workers=self.jobs_n, mp_context=ctx, initializer=_init_worker)


JUDGE_DIED = "the grader's worker died while grading this notebook, twice (its judge was killed: out of memory?)"


class _Recovery:
    """What `_grade` does when a worker dies (a judge killed by the OOM killer, say): the pool breaks and every job
    in it fails at once. None of those results is saved; the pool is recreated and each job retried once: those
    that had started (suspects) one at a time, so a job that kills its worker again is that student's grader
    error alone (not saved, so the next run retries it), and the rest together. A notebook saved in this run as
    'kernel died' is not believed either (the host may have killed that kernel, not its student): it is regraded
    too. `deaths` and `culprits` go into the run's summary."""

    def __init__(self, pool):
        self.pool = pool
        self.deaths = 0
        self.culprits: list[str] = []
        self.regraded = 0

    def can(self, exc: BaseException) -> bool:
        return bool(getattr(self.pool, "broken", None)) and self.pool.broken(exc)

    @staticmethod
    def started(job: Job) -> bool:
        return Path(job.run["result"]).with_name("started").exists()

    def line(self) -> str:
        if not self.deaths:
            return ""
        text = (
            f"grader: a grading worker died {self.deaths} time(s) (a judge was killed); the pool was recreated and "
            f"{self.regraded} notebook(s) regraded"
        )
        if self.culprits:
            text += "; grader error (retried next run): " + ", ".join(self.culprits[:10])
        return text


def grade(course: Course, opts: Options, out=sys.stdout) -> int:

    from attention_course.grading.sandbox import available

    assignment = opts.assignment
    sources = course.source_notebooks(assignment)
    if not sources:
        print(f"error: no source notebooks in {course.source / assignment}/", file=sys.stderr)
        return 2
    why = None if opts.scheduler else available()  # on a cluster, the workers sandbox (checked by preflight)
    if why:
        print(f"error: cannot sandbox submissions: {why}", file=sys.stderr)
        return 2
    db_url = course.db_url
    scratch = Path(tempfile.mkdtemp(prefix="grading-"))
    os.chmod(scratch, 0o755)
    pool = None
    try:
        if opts.scheduler:  # first, so that a wrong address fails at once and changes nothing
            from attention_course.grading.cluster import DaskPool, SetupError

            try:
                pool = DaskPool(opts, scratch, out)
            except SetupError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        try:
            register_assignment(course, db_url, assignment, sources)
        except RuntimeError as exc:  # nbgrader refuses to change graded cells once submissions are recorded
            print(
                f"cannot record {assignment} in the gradebook: {exc}. The graded cells of the source changed "
                f"after grading began: restore them, or remove the assignment's submissions (`nbgrader db "
                f"assignment remove {assignment} --force`) and grade again.",
                file=out,
            )
            return 2
        cell_timeout = opts.cell_timeout or course.cell_timeout
        jobs_n = opts.jobs or os.cpu_count() or 1
        started = time.monotonic()
        if pool is None:
            pool = LocalPool(jobs_n)
        return _grade(course, opts, out, pool, jobs_n, db_url, started, scratch, cell_timeout)
    finally:
        if pool is not None:
            pool.close()
        if os.environ.get("GRADING_KEEP_SCRATCH"):  # for debugging the grader: kernels' logs and notebooks
            print(f"scratch kept in {scratch}", file=out)
        else:
            from attention_course.grading.sandbox import scratch_unmount

            for dirpath, dirnames, _files in os.walk(scratch):  # left mounted by a worker that was killed
                for name in dirnames:
                    if os.path.ismount(os.path.join(dirpath, name)):
                        scratch_unmount(Path(dirpath, name))
            shutil.rmtree(scratch, ignore_errors=True)


def _grade(course, opts, out, pool, jobs_n, db_url, started, scratch, cell_timeout) -> int:
    from nbgrader.api import Gradebook

    assignment = opts.assignment
    sources = course.source_notebooks(assignment)
    refused: list[tuple[str, str]] = []
    students = roster(course, db_url, refused)
    expected = {p.stem for p in sources}
    pool.warm()
    secret = course_secret(course)
    plans: list[Job] = []
    done_states: dict[tuple[str, str], dict] = {}
    failures = 0
    recovered = ""  # what happened when a grading worker died (one line of the summary)
    times = submission_times(course, assignment)

    def complete(job: Job, gb) -> None:
        nonlocal failures
        state = job.state
        if state.get("status") != Status.GRADER_ERROR and not state.get("reused") and not state.pop("saved", False):
            try:
                save(course, state, job.state_path, None, opts.feedback)
            except Exception as exc:  # this student's grader error (nothing saved: retried next run)
                state = job.state = save_failed(state, f"saving the result failed: {type(exc).__name__}: {exc}")
                failures += 1
        done_states[job.student, job.notebook] = state
        write_student(gb, job.student)

    def write_student(gb, student: str) -> None:
        states = {p.stem: done_states.get((student, p.stem)) for p in sources}
        if any(s is None for s in states.values()):
            return  # the student's other notebooks are still running
        if all(s["status"] == Status.NO_SUBMISSION for s in states.values()):
            gb.update_or_create_student(student)
            return
        ts = times.get(student)  # from `make collect`, never from a file the student uploaded
        record(gb, assignment, student, states, ts)

    with Gradebook(db_url) as gb:
        for student in students:  # planning: each student in a child process with limits; saved as it comes
            for src in sources:
                job = plan_isolated(course, opts, student, src, expected, cell_timeout, scratch, secret)
                plans.append(job)
                if not job.run:
                    complete(job, gb)
        todo = [p for p in plans if p.run]
        if todo:
            print(
                f"grading {len(todo)} notebook(s) of {assignment} with {pool.describe()}"
                f" ({len(plans) - len(todo)} already graded or nothing to run)",
                file=out,
                flush=True,
            )
            bar = None
            if opts.progress:
                from tqdm import tqdm

                bar = tqdm(total=len(todo), unit="nb", desc=assignment, file=sys.stderr, dynamic_ncols=True)
            recovery = _Recovery(pool)
            died_kernels: list[Job] = []
            pending = {id(job): json.loads(json.dumps(job.state)) for job in todo}  # as planned, for a retry

            def run_all(batch: list[Job]) -> list[Job]:
                """Run `batch` in the pool; the jobs that failed because the pool broke (none saved)."""
                futures = {pool.submit(job, course, opts): job for job in batch}
                lost = []
                for future in pool.as_completed(futures):
                    job = futures[future]
                    try:
                        job.state = pool.state(future, job)
                    except Exception as exc:
                        if recovery.can(exc):
                            lost.append(job)
                            continue
                        job.state = finish(job.state, None, f"worker failed: {type(exc).__name__}: {exc}")
                    if job.state.get("died") == "kernel died":
                        died_kernels.append(job)
                    complete(job, gb)
                    if bar:
                        bar.update(1)
                return lost

            lost = run_all(todo)
            while lost:
                recovery.deaths += 1
                pool.restart()
                lost_ids = {id(j) for j in lost}
                again = [j for j in died_kernels if id(j) not in lost_ids]  # 'kernel died' while the grader failed
                died_kernels.clear()
                for job in again:
                    job.state_path.unlink(missing_ok=True)
                    job.state = json.loads(json.dumps(pending[id(job)]))
                suspects = [j for j in lost if recovery.started(j)]
                if not suspects:  # the pool broke with no notebook running: the grader itself fails
                    for job in lost:
                        job.state = finish(job.state, None, "the grading worker pool failed")
                        complete(job, gb)
                    break
                recovery.regraded += len(lost) + len(again)
                others = [j for j in lost if not recovery.started(j)] + again
                for job in suspects:  # each alone: only a job that kills its worker again is a grader error
                    Path(job.run["result"]).with_name("started").unlink(missing_ok=True)
                    if run_all([job]):
                        recovery.deaths += 1
                        recovery.culprits.append(f"{job.student}/{job.notebook}")
                        job.state = finish(job.state, None, JUDGE_DIED)
                        complete(job, gb)
                        if bar:
                            bar.update(1)
                        pool.restart()
                for job in others:
                    Path(job.run["result"]).with_name("started").unlink(missing_ok=True)
                lost = run_all(others)
            if bar:
                bar.close()
            failures = sum(job.state["status"] == Status.GRADER_ERROR for job in todo)
            recovered = recovery.line()
    from attention_course.grading.export import export

    export(course, db_url, course.root / "grades.csv", students)
    print_summary(course, assignment, students, sources, done_states, time.monotonic() - started, len(todo), out)
    if recovered:
        print(recovered, file=out)
    for name, why in refused:
        print(f"  REFUSED {escape(name, 60)}: {why}", file=out)
    return 1 if failures else 0


def print_summary(course, assignment, students, sources, states, seconds, executed, out) -> None:
    counts: dict[str, int] = {}
    print(f"\n{assignment}: {len(students)} student(s), {executed} notebook(s) executed in {seconds:.0f} s", file=out)
    width = max([len(s) for s in students] + [7])
    for student in students:
        sts = [states[student, p.stem] for p in sources]
        score = sum(s["score"] for s in sts)
        max_score = sum(s["max_score"] for s in sts)
        status = overall([s["status"] for s in sts])
        kind = "graded" if status == Status.GRADED else "failed"
        counts[kind] = counts.get(kind, 0) + 1
        reason = escape(
            " | ".join(s["reason"] + (f" [{'; '.join(s['notes'])}]" if s.get("notes") else "") for s in sts), 600
        )
        print(f"  {student:<{width}}  {score:g}/{max_score:g}  {status:<13} {reason}", file=out)
    print(
        f"graded: {counts.get('graded', 0)}, failed (nothing gradable or grading refused): "
        f"{counts.get('failed', 0)}; scores in {course.db_url.split('@')[-1]}, grades.csv, "
        f"feedback in {course.feedback.relative_to(course.root)}/",
        file=out,
    )
