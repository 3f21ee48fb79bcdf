"""What crosses to a Dask worker and back: the redacted notebook (test sources replaced, checked that no test
line remains), the check that a worker's result is plain data, and the merge of a worker's result with the
judged test results and the original test sources (what runner.execute returns on one machine)."""

from __future__ import annotations

import copy
import json
from typing import Any

import nbformat

from attention_course.grading.records import RunStatus, is_test_cell
from attention_course.grading.relay import PLAIN
from attention_course.notebooks import HIDDEN_BEGIN, HIDDEN_END

PLACEHOLDER = "# test cell: judged by the instructor's grader (its source is not sent to workers)\n"


def redact(nb: Any) -> tuple[str, dict[int, tuple[str, str]]]:
    """The notebook a worker may see (test cells' sources replaced) and index -> (grade_id, source) of the tests."""
    red = copy.deepcopy(nb)
    tests = {}
    for i, cell in enumerate(red.cells):
        if is_test_cell(cell):
            tests[i] = (cell.metadata["nbgrader"]["grade_id"], cell.source)
            cell.source = PLACEHOLDER
            cell.outputs = []
    text = nbformat.writes(red)
    for gid, source in tests.values():
        for line in source.splitlines():
            if len(line.strip()) >= 16 and line in text and line.strip() not in (HIDDEN_BEGIN, HIDDEN_END):
                # a test line that also appears in a student or locked cell is no secret; any other is a bug here
                if not any(line in c.source for c in nb.cells if not is_test_cell(c)):
                    raise AssertionError(f"test source of {gid} would reach a worker")
    if HIDDEN_BEGIN in text or HIDDEN_END in text:
        if not any(HIDDEN_BEGIN in c.source or HIDDEN_END in c.source for c in nb.cells if not is_test_cell(c)):
            raise AssertionError("a hidden-test block would reach a worker")
    return text, tests


def check_plain(result: Any) -> str | None:
    """None if `result` is a dict of plain values (str, int, float, bool, None) under str keys, else why not."""
    if type(result) is not dict:
        return f"the worker returned a {type(result).__name__}, not a dict"
    for key, value in result.items():
        if type(key) is not str or type(value) not in PLAIN:
            return f"the worker returned a {type(value).__name__} under {str(key)[:40]!r}"
    return None


def merge(
    assembled: Any, tests: dict[int, tuple[str, str]], result: dict[str, Any], judged: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """The worker's statuses and notebook with the judged test results and the original test sources put back:
    what runner.execute returns on one machine."""
    from attention_course.grading.runner import _judge_outputs

    cells = json.loads(result["cells"])
    nb = nbformat.from_dict(json.loads(result["notebook"]))  # validated when saved, as on the local path
    if nb.get("nbformat") != 4 or type(nb.get("cells")) is not list:
        raise ValueError("the worker's notebook is not nbformat 4")
    if (
        type(cells) is not list
        or len(cells) != len(assembled.cells)
        or len(nb.cells) != len(assembled.cells)
        or not all(type(c) is dict for c in cells)
    ):
        raise ValueError("the worker's notebook does not match the job")
    for index, (_gid, source) in tests.items():
        cell = nb.cells[index]
        cell.source = source
        cell.metadata = assembled.cells[index].metadata
        info = cells[index]
        if info.get("status") != RunStatus.JUDGED:
            cells[index] = {k: v for k, v in info.items() if k in ("status", "seconds")}
            if cells[index].get("status") != RunStatus.NOT_RUN:
                cells[index]["status"] = RunStatus.NOT_RUN
            continue
        out = judged.get(index) or {
            "status": RunStatus.ERROR,
            "ename": "KernelLost",
            "evalue": "the worker's relay never reached the grader's judge",
            "stdout": "",
        }
        cell.outputs = _judge_outputs(out)
        entry = {"status": out["status"]}
        if out["status"] != RunStatus.OK:
            entry.update(ename=out.get("ename", "Error"), evalue=out.get("evalue", ""))
        if "seconds" in info:
            entry["seconds"] = info["seconds"]
        cells[index] = entry
    return {"cells": cells, "died": result.get("died"), "seconds": result.get("seconds"), "notebook": nb}


def judge_cells(assembled: Any, tests: dict[int, tuple[str, str]]) -> list[list[Any]]:
    """What the job's judge process runs, in order: [index, "locked"|"test", grade_id, source]."""
    cells: list[list[Any]] = []
    for i, cell in enumerate(assembled.cells):
        if i in tests:
            cells.append([i, "test", tests[i][0], tests[i][1]])
        elif (
            cell.cell_type == "code"
            and cell.metadata.get("grading", {}).get("origin") == "source"
            and cell.source.strip()
        ):
            cells.append([i, "locked", "", cell.source])
    return cells
