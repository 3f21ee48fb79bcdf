"""What the book's Exercises pages say about each assignment, read from its student notebook.

Every page under `book/assignments/` runs, at build time, a hidden cell such as

    from attention_course.assignments import points_table
    points_table("attention-pooling")

so the points, the graded test cells and the signatures on the site are always those of
`exercises/<id>/<id>.ipynb` (the notebook students download): nothing is typed twice. Only the student version is
read (never `solutions/`), so nothing here can show a reference answer or a hidden test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from attention_course import notebooks as nbt

ROOT = Path(__file__).resolve().parents[1]
STUB_LINES = ("# YOUR CODE HERE", "raise NotImplementedError")


@dataclass
class Part:
    title: str
    answers: dict[str, str] = field(default_factory=dict)  # grade_id -> answer cell source (student version)
    tests: dict[str, float] = field(default_factory=dict)  # grade_id -> points

    @property
    def points(self) -> float:
        return sum(self.tests.values())


def exercise_path(assignment: str, root: str | Path = ROOT) -> Path:
    return Path(root) / "exercises" / assignment / f"{assignment}.ipynb"


def title(assignment: str, root: str | Path = ROOT) -> str:
    """The first heading of the locked instructions cell (e.g. "Assignment 1 — ...")."""
    for cell in nbt.read(exercise_path(assignment, root)).cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return match.group(1).strip()
    return assignment


def parts(assignment: str, root: str | Path = ROOT) -> list[Part]:
    """The notebook's `## ` sections that hold answer or test cells, in order."""
    found: list[Part] = []
    current = Part("Set-up")
    for cell in nbt.read(exercise_path(assignment, root)).cells:
        heading = re.match(r"^##\s+(.+)$", cell.source.lstrip(), re.M) if cell.cell_type == "markdown" else None
        if heading:
            current = Part(re.sub(r"\s*\(\s*[\d.]+\s+points?\s*\)\s*$", "", heading.group(1).strip()))
            found.append(current)
        elif cell.cell_type == "code" and nbt.is_answer(cell):
            current.answers[nbt.nbgrader_meta(cell)["grade_id"]] = cell.source
        elif nbt.is_test(cell):
            current.tests[nbt.nbgrader_meta(cell)["grade_id"]] = float(nbt.nbgrader_meta(cell).get("points", 0))
    if current.title == "Set-up" and (current.answers or current.tests):
        found.insert(0, current)
    return [p for p in found if p.answers or p.tests]


def _num(x: float) -> str:
    return f"{x:g}"


def skeleton(source: str) -> str:
    """An answer cell as students receive it, with the `raise NotImplementedError` stub shown as `...`."""
    lines, out = source.splitlines(), []
    for line in lines:
        if line.strip().startswith(STUB_LINES):
            stub = line[: len(line) - len(line.lstrip())] + "..."
            if not out or out[-1] != stub:
                out.append(stub)
        else:
            out.append(line)
    return "\n".join(out).strip("\n")


def names(source: str) -> list[str]:
    """Top-level functions and classes an answer cell defines."""
    return re.findall(r"^(?:def|class)\s+([A-Za-z_]\w*)", source, re.M)


def points_table_markdown(assignment: str, root: str | Path = ROOT) -> str:
    """One row per graded test cell, grouped by part; the part's row names what it asks to implement."""
    rows = ["| Part: you implement | Graded test cell | Points |", "|---|---|---:|"]
    total = 0.0
    for part in parts(assignment, root):
        implement = ", ".join(f"`{n}`" for src in part.answers.values() for n in names(src))
        label = f"{part.title}: {implement}" if implement else part.title
        tests = list(part.tests.items()) or [("—", 0.0)]
        for i, (grade_id, points) in enumerate(tests):
            rows.append(f"| {label if i == 0 else ''} | `{grade_id}` | {_num(points)} |")
        total += part.points
    rows.append(f"| **Total** | | **{_num(total)}** |")
    return "\n".join(rows)


def signatures_markdown(assignment: str, root: str | Path = ROOT) -> str:
    blocks = []
    for part in parts(assignment, root):
        for source in part.answers.values():
            blocks.append(f"```python\n{skeleton(source)}\n```")
    return "\n\n".join(blocks)


def overview_markdown(root: str | Path = ROOT) -> str:
    """One row per released assignment: its title, parts and points."""
    rows = ["| Assignment | Notebook | Parts | Points |", "|---|---|---:|---:|"]

    def chapter_order(path):  # "Assignment 2 — ..." before "Assignment 10 — ..."; unnumbered last, by name
        number = re.match(r"Assignment\s+(\d+)", title(path.parent.name, root))
        return (int(number.group(1)) if number else 10**6, path.parent.name)

    for path in sorted((Path(root) / "exercises").glob("*/*.ipynb"), key=chapter_order):
        assignment = path.parent.name
        if path.stem != assignment:
            continue
        ps = parts(assignment, root)
        rows.append(
            f"| {title(assignment, root)} | `exercises/{assignment}/{assignment}.ipynb` | {len(ps)} | "
            f"{_num(sum(p.points for p in ps))} |"
        )
    return "\n".join(rows)


def _display(markdown: str):
    from IPython.display import Markdown

    return Markdown(markdown)


def points_table(assignment: str):
    """For a book page: the points table of an assignment (rendered as Markdown)."""
    return _display(points_table_markdown(assignment))


def signatures(assignment: str):
    """For a book page: what students implement, as in their notebook, bodies elided."""
    return _display(signatures_markdown(assignment))


def overview():
    """For the Exercises index page: every released assignment with its points."""
    return _display(overview_markdown())
