"""Scoring: what the runner (or a cluster's merge) reports of one executed notebook, to its final state. Points
come only from the judge: a test earns them when its code ran to the end there; anything else earns 0."""

from __future__ import annotations

from typing import Any

from attention_course.grading.ids import escape
from attention_course.grading.records import CellGrade, CellStatus, NotebookState, NotebookStatus, RunStatus


def score_cells(tests: dict[str, int], points: dict[str, float], result: dict[str, Any]) -> dict[str, CellGrade]:
    """Points only for test cells the judge reported as completed without error; anything else (error,
    timeout, dead kernel, never reached) earns 0."""
    cells = {}
    for gid, index in tests.items():
        info = result["cells"][index] if index < len(result["cells"]) else {"status": RunStatus.NOT_RUN}
        status = info.get("status", RunStatus.NOT_RUN)
        if status == RunStatus.OK:
            cells[gid] = CellGrade(points[gid], points[gid], CellStatus.PASSED)
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
        cells[gid] = CellGrade(0.0, points[gid], failed, why)
    return cells


def _judge_failure(result: dict[str, Any]) -> str | None:
    """Why the judge itself failed on this notebook (a set-up cell raised there), if it did: never a score."""
    for info in result["cells"]:
        if isinstance(info, dict) and info.get("status") == RunStatus.GRADER_ERROR:
            return escape(info.get("evalue") or "the judge failed", 300)
    return None


def finish(state: NotebookState, result: dict[str, Any] | None, error: str | None) -> NotebookState:
    """The final state of an executed notebook; a grader error (retried next run) when `error` or no result."""
    if error or result is None:
        return state.grader_error(str(error))
    broken = _judge_failure(result)
    if broken:
        return state.grader_error(broken)
    assert state.tests is not None and state.points is not None, "only a planned run is scored"
    cells = score_cells(state.tests, state.points, result)
    state.cells, state.died, state.seconds = cells, result.get("died"), result.get("seconds")
    state.kernel = result.get("kernel")
    by_why: dict[str, list[str]] = {}
    for gid, c in cells.items():
        if c.score < c.max_score:
            by_why.setdefault(c.why[:100], []).append(gid)
    lost = [f"{', '.join(gids)}: {why}" for why, gids in by_why.items()]
    parts = []
    if result.get("died"):
        parts.append(result["died"])
    truncated = [i for i, c in enumerate(result["cells"]) if c.get("truncated")]
    if truncated:
        parts.append(f"output truncated in {len(truncated)} cell(s)")
    parts += lost[:4] + ([f"+{len(lost) - 4} more"] if len(lost) > 4 else [])
    if state.findings and not state.reviewed:
        parts.append("flagged for review (score unaffected): " + escape("; ".join(state.findings[:3]), 200))
    state.status = NotebookStatus.GRADED
    state.reason = "; ".join(parts) if parts else "all tests passed"
    state.summarise()
    return state


def save_failed(state: NotebookState, why: str) -> NotebookState:
    """The student's grader error when saving their result failed (nothing is saved: the next run retries)."""
    return state.grader_error(why if state.points is not None else escape(why, 300))
