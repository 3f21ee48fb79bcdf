"""The Makefile's environment: the virtualenv's `bin/` is found whether VENV is relative or absolute, and
`make lint` (what CI runs first) passes on the tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

VENV = Path(sys.executable).parent.parent  # the virtualenv running these tests


def make_variables(*args: str) -> dict[str, str]:
    out = subprocess.run(["make", "-pn", "-C", str(ROOT), *args, "help"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        for name in ("PATH", "BIN"):
            if line.startswith(f"{name} := "):
                found[name] = line.split(" := ", 1)[1]
    return found


@pytest.mark.parametrize("venv", [".venv", "ABSOLUTE"])
def test_the_virtualenv_bin_leads_the_path(venv, tmp_path):
    venv = str(tmp_path / "venv") if venv == "ABSOLUTE" else venv
    expected = os.path.join(venv if os.path.isabs(venv) else str(ROOT / venv), "bin")
    found = make_variables(f"VENV={venv}")
    assert found["BIN"] == expected
    assert found["PATH"].split(":")[0] == expected, "nbgrader's own commands (alembic) are found through PATH"


def test_make_lint_passes_with_an_absolute_venv():
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={VENV}", "lint"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{VENV}/bin/ruff check ." in proc.stdout
