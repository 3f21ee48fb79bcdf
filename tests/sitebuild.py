"""The book, built once per test session, and the pages its table of contents lists.

Used by the tests that read the site (one build serves them all, whichever runs first); conftest.py starts it
in the background as soon as such a test is selected.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from helpers import ROOT, VENV_BIN

from tools.claims import toc_pages  # noqa: F401  (the pages the table of contents lists: one reading of _toc.yml)

HTML = ROOT / "_build" / "html"
_RESULT: dict = {}


def start() -> None:
    """Start `jupyter-book build . -W -n --keep-going` into _build/html in the background, once per session
    (conftest starts it as soon as a selected slow test will need the site, so the build's one core works while
    the first tests run; its output goes to files, never to a pipe that could fill)."""
    if "popen" in _RESULT:
        return
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    _RESULT["start"] = time.monotonic()
    _RESULT["files"] = (out, err)
    _RESULT["popen"] = subprocess.Popen(
        [str(VENV_BIN / "jupyter-book"), "build", ".", "--builder", "html", "-W", "-n", "--keep-going"],
        cwd=ROOT,
        stdout=out,
        stderr=err,
        text=True,
    )


def build() -> subprocess.CompletedProcess:
    """The site's build (started now if it was not): waits for it and keeps its result for the session."""
    if "proc" not in _RESULT:
        start()
        popen, (out, err) = _RESULT["popen"], _RESULT["files"]
        try:
            popen.wait(timeout=3600)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        out.seek(0)
        err.seek(0)
        _RESULT["proc"] = subprocess.CompletedProcess(popen.args, popen.returncode, out.read(), err.read())
        _RESULT["seconds"] = time.monotonic() - _RESULT["start"]
    return _RESULT["proc"]


def stop() -> None:
    """Stop a build still running (nobody waited for it)."""
    popen = _RESULT.get("popen")
    if popen is not None and popen.poll() is None:
        popen.kill()
        popen.wait()


def built_html() -> Path:
    """The site's folder; fails the calling test when the build failed."""
    proc = build()
    assert proc.returncode == 0, (
        f"jupyter-book build -W -n exited {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    )
    return HTML


def diagram_cells(page: str) -> list:
    """The code cells of a page (`book/...`) that draw a concept diagram (`attention_course.diagrams`)."""
    import jupytext

    notebook = jupytext.read(ROOT / f"{page}.md")
    return [c for c in notebook.cells if c.cell_type == "code" and "diagrams." in c.source]
