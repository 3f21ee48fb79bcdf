"""The book, built once per test session, and the pages its table of contents lists.

Used by test_book.py and test_browser_site.py (one build serves both, whichever runs first).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml
from conftest import ROOT, VENV_BIN

HTML = ROOT / "_build" / "html"
_RESULT: dict = {}


def toc_pages(root: Path = ROOT) -> list[str]:
    """Every document the table of contents lists (root first), as paths without suffix: `book/intro`, ..."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [str(Path(f).with_suffix("")) if f.endswith((".md", ".ipynb")) else f for f in found]


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
