"""Per-student feedback HTML without hidden tests (unlike `nbgrader generate_feedback`, nbgrader #917).

Built by the trusted grader from the executed notebook: test cells show their visible part and, in place of the
hidden block, one comment line; a failing test shows the exception's name and message, never its traceback
(a traceback quotes the failing hidden line). Every page is then searched for hidden-test lines and reference
answers with `attention_course.leaks` (as the site is): hidden-test lines anywhere, and 3-line runs of the
reference answers anywhere but in the student's own code; a line that still matches is redacted, and a page that
cannot be cleaned is replaced by the score table alone.

Inert pages (`inert`, `render`): nothing of a notebook reaches the page as live HTML unless it went through the
`nh3` sanitiser (ammonia): markdown cells (the header too: its reasons quote the student) are rendered to HTML and
sanitised, HTML and markdown outputs are sanitised, SVG is shown as an image (`<img>` runs no script), images must
be base64, and every other kind of output (JavaScript, widgets) is dropped; no `style`, `class` or `id` survives,
so no student content can cover the gradebook's score. The page then carries a Content-Security-Policy allowing
only its own two MathJax scripts (by a per-page nonce), images from `data:` and no connection of any kind.
"""

from __future__ import annotations

import base64
import copy
import html
import re
import secrets as _random
import tempfile
from functools import lru_cache
from pathlib import Path

import nbformat
import nh3

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


AFTER_TEST = "[output not shown: your code had seen hidden test inputs by then]"


def feedback_notebook(state: dict, executed: Path | None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(_header(state)))
    if executed is None:
        return nb
    run = nbformat.read(str(executed), as_version=4)
    tested = False
    for cell in run.cells:
        cell = copy.deepcopy(cell)
        origin = cell.metadata.get("grading", {}).get("origin")
        is_test = cell.cell_type == "code" and bool(cell.metadata.get("nbgrader", {}).get("grade"))
        if tested and not is_test and cell.cell_type == "code" and cell.get("outputs"):
            # after the first test the kernel may hold hidden inputs: only the judge's outputs are shown
            cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=AFTER_TEST)]
        tested = tested or is_test
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
# TeX packages that can style, link or load: \\style/\\class/\\href (html), \\bbox[css], \\require, autoload
MATHJAX_CONFIG = (
    "window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], processEscapes: true, "
    "packages: {'[-]': ['html', 'bbox', 'require', 'autoload']}}, "
    "options: {enableMenu: false}};"
)
CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-src 'none'; object-src 'none'"
)
URL_SCHEMES = {"http", "https", "mailto", "data"}
SCORE_ID = "gradebook-score"  # the header's container: no student content can carry an id


def _attribute(tag: str, attribute: str, value: str) -> str | None:
    """Images only from data: URLs of images (nothing is fetched); no link to a data: URL."""
    if attribute == "src":
        return value if tag == "img" and value.lower().startswith("data:image/") else None
    if attribute == "href" and value.strip().lower().startswith("data:"):
        return None
    return value


def clean_html(text: str) -> str:
    """Student-supplied HTML made inert: no script, event handler, style, class, id, frame, form or meta."""
    return nh3.clean(
        str(text), url_schemes=URL_SCHEMES, attribute_filter=_attribute, link_rel="noopener noreferrer nofollow"
    )


def _markdown(source: str) -> str:
    from nbconvert.filters.markdown import markdown2html_mistune

    return clean_html(markdown2html_mistune(source))


_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
IMAGES = ("image/png", "image/jpeg", "image/gif")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _inert_output(out) -> dict | None:
    kind = out.get("output_type")
    if kind == "stream":
        name = out.get("name") if out.get("name") in ("stdout", "stderr") else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=_text(out.get("text", "")))
    if kind == "error":
        return nbformat.v4.new_output(
            "error",
            ename=_text(out.get("ename", "")),
            evalue=_text(out.get("evalue", "")),
            traceback=[_text(t) for t in out.get("traceback", []) if isinstance(t, (str, list))],
        )
    if kind not in ("display_data", "execute_result"):
        return None
    given = out.get("data", {}) if isinstance(out.get("data"), dict) else {}
    data = {}
    if "text/html" in given:
        data["text/html"] = clean_html(_text(given["text/html"]))
    elif "text/markdown" in given:
        data["text/html"] = _markdown(_text(given["text/markdown"]))
    elif "image/svg+xml" in given:  # as an image: an <img> runs no script and loads nothing
        svg = base64.b64encode(_text(given["image/svg+xml"]).encode("utf-8", "replace")).decode()
        data["text/html"] = f'<img alt="figure" src="data:image/svg+xml;base64,{svg}">'
    for mime in IMAGES:
        if mime in given and _BASE64.fullmatch(_text(given[mime])):
            data[mime] = _text(given[mime])
    if "text/plain" in given:
        data["text/plain"] = _text(given["text/plain"])
    elif "text/latex" in given:
        data["text/plain"] = _text(given["text/latex"])
    if not data:
        return None
    if kind == "execute_result":
        count = out.get("execution_count")
        return nbformat.v4.new_output(kind, data=data, execution_count=count if type(count) is int else None)
    return nbformat.v4.new_output(kind, data=data)


def inert(nb) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    """A copy of `nb` built from checked parts only, and the sanitised HTML of each markdown cell under the
    placeholder that stands for it (put back by `render`, after nbconvert, so nothing parses it again)."""
    clean = nbformat.v4.new_notebook()
    blocks: dict[str, str] = {}
    nonce = _random.token_hex(8)
    for i, cell in enumerate(nb.cells):
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "code":
            count = cell.get("execution_count")
            new = nbformat.v4.new_code_cell(source, execution_count=count if type(count) is int else None)
            new.outputs = [o for o in (_inert_output(out) for out in cell.get("outputs", [])) if o is not None]
        else:  # markdown, raw, anything else: sanitised HTML in place of a placeholder
            token = f"INERT{nonce}CELL{i}"
            body = _markdown(source) if cell.get("cell_type") == "markdown" else f"<pre>{html.escape(source)}</pre>"
            blocks[f"<p>{token}</p>"] = f'<div id="{SCORE_ID}">{body}</div>' if i == 0 else body
            new = nbformat.v4.new_markdown_cell(token)
        new["id"] = f"cell-{i}"
        clean.cells.append(new)
    return clean, blocks


def local_mathjax(feedback_dir: Path) -> bool:
    """MathJax 3 (the copy sphinx-mathjax-offline ships for the site) in feedback/_mathjax/, so feedback pages
    load nothing from a CDN. False when it cannot be found (pages then show TeX source)."""
    from importlib import metadata

    dest = feedback_dir / "_mathjax" / "tex-svg-full.js"
    if dest.exists():
        return True
    try:
        src = Path(
            str(
                metadata.distribution("sphinx-mathjax-offline").locate_file(
                    "sphinx-mathjax-offline/static/mathjax/tex-svg-full.js"
                )
            )
        )
    except metadata.PackageNotFoundError:
        return False
    if not src.is_file():
        return False
    atomic_write(dest, src.read_bytes())
    return True


_EXPORTER: list = []  # this process's HTMLExporter (see `warm`)


def _exporter():
    """The HTMLExporter of this process, made once: building one and compiling its templates costs more than
    rendering a page. Nothing of a page stays in it (each render starts from fresh resources and re-registers its
    per-notebook filters), and the pages of students are rendered in forked children (grade.isolated), which
    inherit it as `warm` left it and whose changes die with them."""
    if not _EXPORTER:
        from nbconvert import HTMLExporter

        _EXPORTER.append(HTMLExporter(template_name="lab", mathjax_url=MATHJAX))
    return _EXPORTER[0]


def warm() -> None:
    """Build the exporter and compile the page's templates in this process (a grading worker, before it forks a
    child per page), with a page of every kind of cell and output `inert` lets through."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    code = nbformat.v4.new_code_cell("x = 1", execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="x\n"),
        nbformat.v4.new_output("error", ename="E", evalue="e", traceback=[]),
        nbformat.v4.new_output("display_data", data={"text/html": "<b>x</b>", "image/png": png, "text/plain": "x"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1),
    ]
    try:
        render(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# x\n$x$"), code]))
    except Exception:  # only a head start: a page that cannot be rendered says why when it is rendered
        _EXPORTER.clear()


def render(nb, mathjax: bool = True) -> str:
    """The page, inert (see the module's doc), with MathJax from the feedback folder's own copy (never a CDN)."""
    nb, blocks = inert(nb)
    body, _ = _exporter().from_notebook_node(nb)
    # no script of the template either (require.js, widget managers, mermaid): a static page needs none
    body = re.sub(r"<script\b.*?</script\s*>", "", body, flags=re.S | re.I)
    for token, block in blocks.items():
        body = body.replace(token, block, 1)
    nonce = _random.token_urlsafe(18)
    scripts = (
        f'<script nonce="{nonce}">{MATHJAX_CONFIG}</script><script nonce="{nonce}" src="{MATHJAX}" defer></script>'
        if mathjax
        else ""
    )
    policy = f'<meta http-equiv="Content-Security-Policy" content="{CSP.format(nonce=nonce)}">'
    head = re.search(r"<head[^>]*>", body)
    at = head.end() if head else 0
    body = body[:at] + policy + body[at:]
    return body.replace("</head>", scripts + "</head>", 1)


def write_feedback(course, state: dict, executed: Path | None) -> Path:
    dest = course.feedback / state["student"] / state["assignment"] / f"{state['notebook']}.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    secrets = _secrets(str(course.source / state["assignment"]))
    nb = feedback_notebook(state, executed)
    _redact(nb, secrets)
    text = render(nb, local_mathjax(course.feedback))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(text, encoding="utf-8", errors="replace")
        leaked = leaks.find_leaks(list(secrets), [probe]) or _answers_leak(
            nb, _all_secrets(str(course.source / state["assignment"]))
        )
    if leaked:
        text = plain_page(state)
    atomic_write(dest, text.encode("utf-8", "replace"))
    return dest


def plain_page(state: dict) -> str:
    """The score table and the reasons as plain text: nothing of the notebook, no script, nothing loaded."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f'</head><body><pre id="{SCORE_ID}">{html.escape(_header(state))}</pre></body></html>'
    )


def write_reduced(course, state: dict) -> Path:
    """The page when the full one could not be rendered within the grader's limits."""
    dest = course.feedback / state["student"] / state["assignment"] / f"{state['notebook']}.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, plain_page(state).encode("utf-8", "replace"))
    return dest
