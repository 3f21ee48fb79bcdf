"""The tests' shared fixtures. What they share besides fixtures lives in helpers.py."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import ASSIGNMENTS, ROOT, grade_assignment


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """Autograde every assignment once for the whole simulated class (assignments in parallel, one nbgrader
    call each, one core each); returns the per-cell scores."""
    base = tmp_path_factory.mktemp("class")
    scores = {}
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for result in pool.map(lambda a: grade_assignment(a, base / a), ASSIGNMENTS):
            scores.update(result)
    return scores


def pytest_collection_finish(session) -> None:
    """When a selected slow test reads the built site, start building it now, in the background (one core):
    the first tests (the nbgrader class) run meanwhile."""
    if session.config.option.collectonly:
        return
    for path in {Path(str(item.fspath)) for item in session.items if item.get_closest_marker("slow")}:
        if "built_html" in path.read_text():
            import sitebuild

            sitebuild.start()
            return


def pytest_sessionfinish(session) -> None:
    """A background build that no test waited for (they were deselected or the run stopped) is stopped."""
    import sys

    sitebuild = sys.modules.get("sitebuild")
    if sitebuild is not None:
        sitebuild.stop()
