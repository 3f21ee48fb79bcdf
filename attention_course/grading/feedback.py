"""Per-student feedback HTML without hidden tests (unlike `nbgrader generate_feedback`, nbgrader #917).

Built by the trusted grader from the executed notebook: test cells show their visible part and, in place of the
hidden block, one comment line; a failing test shows the exception's name and message, never its traceback
(a traceback quotes the failing hidden line). Every page is then searched for hidden-test lines and reference
answers with `attention_course.leaks` (as the site is): hidden-test lines anywhere, and 3-line runs of the
reference answers anywhere but in the student's own code; a line that still matches is redacted, and a page that
cannot be cleaned is replaced by the score table alone.
"""

from __future__ import annotations

import copy
import html
import re
import tempfile
from functools import lru_cache
from pathlib import Path

import nbformat

from attention_course import leaks
from attention_course import notebooks as nbt
from attention_course.grading.course import atomic_write
from attention_course.grading.records import CellStatus, NotebookStatus

HIDDEN_NOTE = "# (hidden tests run here when your notebook is graded)"


@lru_cache(maxsize=16)
def _all_secrets(source_dir: str) -> tuple:
    return tuple(leaks.secrets(source_dir))


def _secrets(source_dir: str) -> tuple:
    return tuple(s for s in _all_secrets(source_dir) if s.kind == "hidden test")


def _answers_leak(nb, secrets) -> bool:
    """Whether any reference answer or hidden test shows in the page *apart from the student's own code*
    (their answer and own cells may legitimately match the reference; a submission that is not their own work,
    such as a link to solutions/, is refused before grading)."""
    shown = copy.deepcopy(nb)
    for cell in shown.cells:
        if cell.metadata.get("grading", {}).get("origin") in ("answer", "student"):
            cell.source = ""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "shown.ipynb"
        nbformat.write(shown, str(probe))
        return bool(leaks.find_leaks(list(secrets), [probe]))


def _hide(source: str) -> str:
    return nbt.without_hidden(source, HIDDEN_NOTE + "\n")


def _table(state: dict) -> str:
    rows = ["| Test | Points | Result |", "|---|---|---|"]
    for gid, c in state.get("cells", {}).items():
        result = CellStatus.PASSED if c["score"] >= c["max_score"] else (c.get("why") or c.get("status", ""))
        result = result.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{gid}` | {c['score']:g} / {c['max_score']:g} | {result} |")
    return "\n".join(rows)


def _header(state: dict) -> str:
    lines = [
        f"# Feedback: {state['assignment']} / {state['notebook']}",
        "",
        f"**Score: {state['score']:g} / {state['max_score']:g}** ({state['status']})",
        "",
    ]
    if state.get("reason") and state["status"] != NotebookStatus.GRADED:
        lines += [f"Why: {state['reason']}", ""]
    for note in state.get("notes", []):
        lines += [f"Note: {note}", ""]
    return "\n".join(lines + [_table(state)])


def _redact(nb, secrets) -> int:
    texts = {s.text for s in secrets}
    count = 0

    def clean(text: str) -> str:
        nonlocal count
        out = []
        for line in text.splitlines(keepends=True):
            squashed = " ".join(line.split())
            if any(t in squashed for t in texts):
                count += 1
                out.append("[hidden]\n")
            else:
                out.append(line)
        return "".join(out)

    for cell in nb.cells:
        cell.source = clean(cell.source)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = clean("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
            for key, value in list(out.get("data", {}).items()):
                if isinstance(value, str):
                    out["data"][key] = clean(value)
    return count


def feedback_notebook(state: dict, executed: Path | None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(_header(state)))
    if executed is None:
        return nb
    run = nbformat.read(str(executed), as_version=4)
    for cell in run.cells:
        cell = copy.deepcopy(cell)
        origin = cell.metadata.get("grading", {}).get("origin")
        if origin == "source" and cell.cell_type == "code":
            cell.source = _hide(cell.source)
            outputs = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    outputs.append(
                        nbformat.v4.new_output(
                            "stream", name="stderr", text=f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"[:2000]
                        )
                    )
                else:
                    outputs.append(out)
            cell.outputs = outputs
        elif cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [
                        t for t in out.get("traceback", []) if "BEGIN HIDDEN" not in t
                    ]  # loose: colour codes may split the marker
        cell.metadata = {"grading": {"origin": origin}}
        nb.cells.append(cell)
    return nb


MATHJAX = "../../_mathjax/tex-svg-full.js"  # from feedback/<student>/<assignment>/<notebook>.html
MATHJAX_CONFIG = (
    "<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], processEscapes: true}};</script>"
)


def local_mathjax(feedback_dir: Path) -> bool:
    """MathJax 3 (the copy sphinx-mathjax-offline ships for the site) in feedback/_mathjax/, so feedback pages
    load nothing from a CDN. False when it cannot be found (pages then show TeX source)."""
    from importlib import metadata

    dest = feedback_dir / "_mathjax" / "tex-svg-full.js"
    if dest.exists():
        return True
    try:
        src = Path(
            metadata.distribution("sphinx-mathjax-offline").locate_file(
                "sphinx-mathjax-offline/static/mathjax/tex-svg-full.js"
            )
        )
    except metadata.PackageNotFoundError:
        return False
    if not src.is_file():
        return False
    atomic_write(dest, src.read_bytes())
    return True


def render(nb, mathjax: bool = True) -> str:
    """The page, with MathJax from the feedback folder's own copy (never a CDN)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab", mathjax_url=MATHJAX).from_notebook_node(nb)
    tag = f'<script src="{MATHJAX}"> </script>'
    local = MATHJAX_CONFIG + f'<script src="{MATHJAX}" defer></script>' if mathjax else ""
    body = body.replace(tag, local)
    # the template's other outside scripts (require.js, widget managers) are not needed by a static page
    return re.sub(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', "", body)


def write_feedback(course, state: dict, executed: Path | None) -> Path:
    dest = course.feedback / state["student"] / state["assignment"] / f"{state['notebook']}.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    secrets = _secrets(str(course.source / state["assignment"]))
    nb = feedback_notebook(state, executed)
    _redact(nb, secrets)
    text = render(nb, local_mathjax(course.feedback))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(text)
        leaked = leaks.find_leaks(list(secrets), [probe]) or _answers_leak(
            nb, _all_secrets(str(course.source / state["assignment"]))
        )
    if leaked:
        text = f"<html><body><pre>{html.escape(_header(state))}</pre></body></html>"
    tmp_dest = dest.with_name(f".{dest.name}.tmp")
    tmp_dest.write_text(text)
    tmp_dest.replace(dest)
    return dest
