"""Saving one graded notebook: its state file (atomically: it marks the notebook done), the executed notebook
and the feedback page (rendered in a forked child with limits; the score table when that fails)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from attention_course.grading import feedback
from attention_course.grading.course import Course, atomic_write
from attention_course.grading.forked import run_forked
from attention_course.grading.ids import escape
from attention_course.grading.records import NotebookState

FEEDBACK_SECONDS = int(os.environ.get("GRADING_FEEDBACK_SECONDS", 120))  # one feedback page (tests lower it)
FEEDBACK_MEMORY = 4 * 2**30  # beyond what the worker has mapped


def writable(value: Any) -> Any:
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

    def call() -> str:
        fn()
        return ""

    outcome = run_forked(call, seconds, memory)
    if outcome.value is not None:
        return None
    if outcome.signal:
        return f"it took longer than {seconds} s" if outcome.timed_out else f"signal {outcome.signal}"
    why = f"{outcome.error[0]}: {outcome.error[1]}"[:200] if outcome.error else ""
    return escape(why or "it failed", 200)


def save(course: Course, state: NotebookState, state_path: Path, executed: Path | None, with_feedback: bool) -> None:
    """The state file, the executed notebook, the feedback page.

    A feedback page that cannot be rendered within its limits (time, memory: a huge or odd notebook) is
    replaced by the score table and the reason, with a note: the score stays the judge's, and the student is
    graded. Any other failure raises: the caller makes it this student's grader error (retried next run)."""
    target = state_path.with_name(f"{state.notebook}.ipynb")
    state_path.parent.mkdir(parents=True, exist_ok=True)
    if executed and executed.exists():
        shutil.copyfile(executed, target)
    record = writable(state.to_json())
    if with_feedback:
        shown = target if executed and target.exists() else None
        if shown is None:  # the score table alone (no notebook of the student's): small, rendered here
            why = None
            feedback.write_feedback(course, record, None)
        else:
            why = isolated(lambda: feedback.write_feedback(course, record, shown), FEEDBACK_SECONDS)
        if why is not None:
            state.notes.append(f"feedback reduced to the score table: rendering failed ({why})")
            record = writable(state.to_json())
            feedback.write_reduced(course, record)
    atomic_write(state_path, json.dumps(record, indent=1))
    saved = NotebookState.from_json(record)  # what was saved is what the summary and the gradebook show
    state.reason, state.notes, state.findings, state.cells = saved.reason, saved.notes, saved.findings, saved.cells
