"""The book, built once per test session, and the pages its table of contents lists.

Used by test_book.py and test_browser_site.py (one build serves both, whichever runs first).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from helpers import ROOT, VENV_BIN

from tools.claims import toc_pages  # noqa: F401  (the pages the table of contents lists: one reading of _toc.yml)

HTML = ROOT / "_build" / "html"
_RESULT: dict = {}


def build() -> subprocess.CompletedProcess:
    """`jupyter-book build . -W -n --keep-going` into _build/html, once per session (the result is kept)."""
    if "proc" not in _RESULT:
        start = time.monotonic()
        _RESULT["proc"] = subprocess.run(
            [str(VENV_BIN / "jupyter-book"), "build", ".", "--builder", "html", "-W", "-n", "--keep-going"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        _RESULT["seconds"] = time.monotonic() - start
    return _RESULT["proc"]


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
