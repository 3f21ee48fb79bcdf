"""Shared fixtures: paths, the course's assignments, and a private HOME for Jupyter and matplotlib."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
HOME = ROOT / "_build" / "home"
for var, sub in [("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                 ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                 ("MPLCONFIGDIR", "matplotlib")]:
    os.environ.setdefault(var, str(HOME / sub))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["PATH"] = os.pathsep.join([str(VENV_BIN), os.environ["PATH"]])
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
sys.path.insert(0, str(ROOT))

ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
# For quick local runs: COURSE_ASSIGNMENTS=scoring-functions,masking restricts the per-assignment tests.
if os.environ.get("COURSE_ASSIGNMENTS"):
    ASSIGNMENTS = [a for a in ASSIGNMENTS if a in os.environ["COURSE_ASSIGNMENTS"].split(",")]


def source_notebooks(assignment: str) -> list[Path]:
    return sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))


def run(cmd: list[str], cwd: Path, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, returning its output; on failure the assertion message shows the output's tail."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def copy_course(dest: Path) -> Path:
    """A private copy of the course (config, solutions, exercises) to run nbgrader in."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
