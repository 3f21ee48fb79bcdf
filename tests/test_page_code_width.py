"""Every line of code a page shows fits its code block in a 1280-pixel window: at most WIDTH characters.

A wider line is not wrapped: the block scrolls sideways and the end of the line (often the part that matters: a
shape comment, the last argument) is hidden. What a page shows as code: its code cells (without their option
header, which is never rendered), its fenced blocks (```bash, ```python), and what `literalinclude` puts on the
page (a `:pyobject:` of a module, or the whole file).

WIDTH is measured, not guessed: tests/test_browser_site.py::test_code_blocks_show_page_code_width_characters
opens a built page in Chromium at 1280 x 800 and checks that a code block shows WIDTH characters without
scrolling (measured: 77.4 characters fit, so 77).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import ROOT
from sitebuild import toc_pages

WIDTH = 77
PAGES = [p for p in toc_pages() if (ROOT / f"{p}.md").is_file()]


def shown_code(page: Path) -> list[tuple[str, int, str]]:
    """(where, line number, text) of every code line `page` (MyST Markdown) shows."""
    lines = page.read_text().split("\n")
    shown, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(`{3,}|~{3,})\s*(\{[\w-]+\})?\s*(.*)$", lines[i])
        if not fence:
            i += 1
            continue
        marks, directive, argument = fence.groups()
        j = i + 1
        options = {}
        if directive:  # options: a YAML block between --- lines, or :name: value lines
            if j < len(lines) and lines[j].strip() == "---":
                j += 1
                while lines[j].strip() != "---":
                    j += 1
                j += 1
            while j < len(lines) and (option := re.match(r"^:([\w-]+):\s*(.*)$", lines[j])):
                options[option.group(1)] = option.group(2)
                j += 1
        start = j
        while not lines[j].startswith(marks):
            j += 1
        if directive in ("{code-cell}", "{code-block}", "{code}") or (not directive and argument):
            shown += [(page.name, n + 1, lines[n]) for n in range(start, j)]
        elif directive == "{literalinclude}":
            shown += included(page.parent / argument, options)
        i = j + 1
    return shown


def included(source: Path, options: dict) -> list[tuple[str, int, str]]:
    """The lines `literalinclude` shows of `source` (whole file or one `:pyobject:`)."""
    text = source.read_text().split("\n")
    unsupported = set(options) - {"pyobject", "language", "caption", "name"}
    assert not unsupported, f"{source}: this test does not know literalinclude options {unsupported}"
    if "pyobject" not in options:
        return [(source.name, n + 1, line) for n, line in enumerate(text)]
    node: ast.AST = ast.parse("\n".join(text))
    for name in options["pyobject"].split("."):
        node = next(n for n in ast.iter_child_nodes(node) if getattr(n, "name", None) == name)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return [(source.name, n + 1, text[n]) for n in range(first - 1, node.end_lineno)]


@pytest.mark.parametrize("page", PAGES)
def test_page_code_fits_the_window(page):
    shown = shown_code(ROOT / f"{page}.md")
    wide = [f"{where}:{n}: {len(line)} chars: {line}" for where, n, line in shown if len(line) > WIDTH]
    assert not wide, f"{page}: code lines wider than {WIDTH} characters:\n" + "\n".join(wide[:20])


def test_the_check_sees_code_cells_fences_and_includes(tmp_path):
    """The parser finds a wide line in each kind of block, and ignores option headers and prose directives."""
    module = tmp_path / "mod.py"
    module.write_text("def f():\n    return '" + "x" * 90 + "'\n\n\ndef g():\n    return 1\n")
    page = tmp_path / "page.md"
    long = "y" * 90
    page.write_text(
        '```{code-cell} ipython3\n---\nmystnb:\n  image:\n    alt: "' + long + '"\n---\nz = 1\n```\n\n'
        "```{code-cell} ipython3\n:tags: [hide-input]\nw = '" + long + "'\n```\n\n"
        "```bash\nmake " + long + "\n```\n\n"
        "```{note}\n" + long + "\n```\n\n"
        "```{literalinclude} mod.py\n:pyobject: f\n```\n\n"
        "```{literalinclude} mod.py\n:pyobject: g\n```\n"
    )
    found = [(where, line) for where, _, line in shown_code(page) if len(line) > WIDTH]
    assert [where for where, _ in found] == ["page.md", "page.md", "mod.py"], found
    assert [line for _, _, line in shown_code(page)].count("z = 1") == 1
    assert "    return 1" in [line for _, _, line in shown_code(page)]
