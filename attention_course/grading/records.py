"""The grader's vocabulary: every status a notebook, a test cell or an executed cell can have, and the records
that carry them between planning (grade.py), execution (runner.py), feedback (feedback.py) and export
(export.py).

States are saved as JSON (`autograded/<student>/<assignment>/<notebook>.grading.json`), so the statuses are
`StrEnum`s: they are written as their plain strings and compare equal to them when read back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


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


@dataclass
class CellGrade:
    """The score of one test cell, as saved in a state and written to the gradebook."""

    score: float
    max_score: float
    status: CellStatus
    why: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def zero(cls, max_score: float, why: str) -> CellGrade:
        return cls(0.0, max_score, CellStatus.NOT_GRADED, why)


def overall(statuses: list[str]) -> str:
    """A student's status over their notebooks: graded when all are, else the first that is not."""
    return next((s for s in statuses if s != NotebookStatus.GRADED), NotebookStatus.GRADED)
