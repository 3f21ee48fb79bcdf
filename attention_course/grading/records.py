"""The grader's shared records: every status a notebook, a test cell or an executed cell can have, a student's
notebook state (`NotebookState`), the spec of one run (`RunSpec`), and the few facts every layer must agree on
(what a test cell is, a student's reason line).

States are saved as JSON (`autograded/<student>/<assignment>/<notebook>.grading.json`), so the statuses are
`StrEnum`s: they are written as their plain strings and compare equal to them when read back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # attention_course/, mounted read-only in the sandbox


class GradingError(Exception):
    """A run that cannot start or go on (the instructor's to fix): the CLI prints it as one `error:` line."""


class NotebookStatus(StrEnum):
    """One student's notebook, after planning or grading."""

    GRADED = "graded"  # every test cell was judged
    NO_SUBMISSION = "no submission"  # nothing arrived: 0, with the reason
    MISSING = "missing"  # the folder is there, the notebook is not (or is under another name)
    UNREADABLE = "unreadable"  # not a notebook we can grade (the reason says why)
    PENDING = "pending"  # planned, not yet executed
    GRADER_ERROR = "grader error"  # our fault or the machine's: retried on the next run, never a score
    NOT_GRADED = "not graded"  # submitted, not graded yet (grades.csv before `make grade` ran)


class CellStatus(StrEnum):
    """A graded test cell in the gradebook and feedback."""

    PASSED = "passed"
    ERROR = "error"  # the test's code raised (an assertion, the student's exception)
    TIMEOUT = "timeout"
    NOT_RUN = "not run"  # the kernel died or the notebook's time ran out before this test
    NOT_GRADED = "not graded"  # nothing gradable arrived


class RunStatus(StrEnum):
    """A cell as the runner left it (runner.py): tests are `ok`/`error`/`timeout`, the student's cells `ran`."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    NOT_RUN = "not run"
    RAN = "ran"
    JUDGED = "judged"  # on a cluster worker: a test whose result only the instructor's judge holds
    GRADER_ERROR = "grader error"  # the judge itself failed (a set-up cell): never the student's fault


def is_test_cell(cell: Mapping[str, Any]) -> bool:
    """A test cell of an assembled notebook: graded code that came from the source notebook (assemble.py)."""
    meta = cell.get("metadata", {})
    return (
        cell.get("cell_type") == "code"
        and meta.get("grading", {}).get("origin") == "source"
        and bool(meta.get("nbgrader", {}).get("grade"))
    )


def reason_line(states: Iterable[Mapping[str, Any]]) -> str:
    """A student's reason over their notebooks (saved states, as JSON): the summary's and grades.csv's."""
    return " | ".join(
        str(s.get("reason", "")) + (f" [{'; '.join(s['notes'])}]" if s.get("notes") else "") for s in states
    )


def overall(statuses: Iterable[str]) -> str:
    """A student's status over their notebooks: graded when all are, else the first that is not."""
    return next((s for s in statuses if s != NotebookStatus.GRADED), NotebookStatus.GRADED)


@dataclass
class CellGrade:
    """The score of one test cell, as saved in a state and written to the gradebook."""

    score: float
    max_score: float
    status: CellStatus
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def zero(cls, max_score: float, why: str) -> CellGrade:
        return cls(0.0, max_score, CellStatus.NOT_GRADED, why)

    @classmethod
    def from_json(cls, data: Any) -> CellGrade:
        if not isinstance(data, dict):
            raise ValueError("a cell grade is not an object")
        score, max_score, why = data.get("score"), data.get("max_score"), data.get("why", "")
        if not isinstance(score, int | float) or not isinstance(max_score, int | float) or not isinstance(why, str):
            raise ValueError("a cell grade's score, max_score or why has the wrong type")
        return cls(float(score), float(max_score), CellStatus(str(data.get("status"))), why)


_OPTIONAL = ("fingerprint", "file", "reviewed", "tests", "points", "died", "seconds", "kernel")  # saved only when set


@dataclass
class NotebookState:
    """One student's notebook: planned, then graded; saved as its state file and read back on a rerun."""

    student: str
    assignment: str
    notebook: str
    status: str = NotebookStatus.PENDING
    reason: str = ""
    cells: dict[str, CellGrade] = field(default_factory=dict)
    score: float = 0.0
    max_score: float = 0.0
    notes: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # static scan: flagged for review, never a score
    fingerprint: str | None = None  # what the result depends on (planner.fingerprint): reused while equal
    file: str | None = None  # the submitted file, relative to the course root
    reviewed: bool | None = None  # the instructor cleared this student's flags (--trust)
    tests: dict[str, int] | None = None  # grade_id -> cell index in the assembled notebook
    points: dict[str, float] | None = None  # grade_id -> points of the source
    died: str | None = None
    seconds: float | None = None
    kernel: str | None = None  # "warm" (forked from the worker's template) or "cold: why" (runner.execute)
    reused: bool = False  # read back from an unchanged earlier result (not saved again)
    saved: bool = False  # its worker saved it already (not saved)

    @classmethod
    def zero(cls, student: str, assignment: str, notebook: str, points: Mapping[str, float], status: str, why: str):
        """Nothing gradable: every test cell 0 with the reason."""
        state = cls(student, assignment, notebook, status=status, reason=why)
        state.zero_cells(points, why)
        return state

    def zero_cells(self, points: Mapping[str, float], why: str) -> None:
        self.cells = {gid: CellGrade.zero(pts, why) for gid, pts in points.items()}
        self.summarise()

    def summarise(self) -> None:
        self.score = round(sum(c.score for c in self.cells.values()), 4)
        self.max_score = round(sum(c.max_score for c in self.cells.values()), 4)

    def grader_error(self, why: str) -> NotebookState:
        """Our failure, not the student's: every cell 0, nothing saved, retried on the next run."""
        self.status = NotebookStatus.GRADER_ERROR
        self.reason = f"grader error (will be retried): {why}"
        points = self.points if self.points is not None else {g: c.max_score for g, c in self.cells.items()}
        self.zero_cells(points, "grader error")
        return self

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "student": self.student,
            "assignment": self.assignment,
            "notebook": self.notebook,
            "notes": list(self.notes),
            "findings": list(self.findings),
        }
        for name in _OPTIONAL:
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        data.update(
            status=str(self.status),
            reason=self.reason,
            cells={gid: c.to_json() for gid, c in self.cells.items()},
            score=self.score,
            max_score=self.max_score,
        )
        return data

    @classmethod
    def from_json(cls, data: Any) -> NotebookState:
        """A state read back (a state file, a planning child's answer); ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("a state is not an object")
        known = {f.name for f in fields(cls)} - {"reused", "saved"}
        kwargs = {k: v for k, v in data.items() if k in known}
        for name in ("student", "assignment", "notebook", "status", "reason"):
            if not isinstance(kwargs.get(name, ""), str):
                raise ValueError(f"a state's {name} is not a string")
        for name in ("notes", "findings"):
            items = kwargs.setdefault(name, [])
            if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
                raise ValueError(f"a state's {name} are not strings")
        cells = kwargs.get("cells", {})
        if not isinstance(cells, dict):
            raise ValueError("a state's cells are not an object")
        kwargs["cells"] = {str(gid): CellGrade.from_json(c) for gid, c in cells.items()}
        kwargs["status"] = NotebookStatus(kwargs.get("status", NotebookStatus.PENDING))
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field missing
            raise ValueError(f"not a state: {exc}") from None


@dataclass
class RunSpec:
    """One notebook to execute (runner.execute), in a scratch box: `box/assembled.ipynb` with the student's
    folder copied to `box/work`, the kernel's sockets in `box/ipc`. The same on one machine and on a worker."""

    box: str
    cell_timeout: int
    notebook_timeout: int
    limits: dict[str, int]  # sandbox.Limits fields
    student_names: list[str] = field(default_factory=list)  # what the judge looks up in the kernel
    judge_key: str = ""  # hex: hidden blocks' seeds (only where the judge runs)
    uid: int | None = None  # the sandbox uid leased by the worker that runs it

    @property
    def notebook(self) -> Path:
        return Path(self.box) / "assembled.ipynb"

    @property
    def work_dir(self) -> Path:
        return Path(self.box) / "work"

    @property
    def ipc_dir(self) -> Path:
        return Path(self.box) / "ipc"

    @property
    def executed(self) -> Path:
        return Path(self.box) / "executed.ipynb"

    @property
    def started(self) -> Path:
        """Touched when a worker starts it: if that worker dies, this job is a suspect (grade._Recovery)."""
        return Path(self.box) / "started"

    def for_runner(self) -> dict[str, Any]:
        """The plain job `runner.execute` reads."""
        return {
            "notebook": str(self.notebook),
            "work_dir": str(self.work_dir),
            "ipc_dir": str(self.ipc_dir),
            "package_dir": str(PACKAGE_DIR),
            "uid": self.uid,
            "cell_timeout": self.cell_timeout,
            "notebook_timeout": self.notebook_timeout,
            "limits": dict(self.limits),
            "student_names": list(self.student_names),
            "judge_key": self.judge_key,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> RunSpec:
        if not isinstance(data, dict):
            raise ValueError("a run spec is not an object")
        return cls(**data)
