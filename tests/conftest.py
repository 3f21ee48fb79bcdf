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
