"""CONTRIBUTING.md's add-an-assignment checklist holds for every assignment in `solutions/`.

The checklist's table names each place an assignment touches, as a path with `<id>` (or `<id_>`, the id with
underscores) in it; every assignment must have every one of them, its answer names must be in the contract, and
the README's chapters table must list it. A checklist that forgot a place, or an assignment that skipped one, fails.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from helpers import ASSIGNMENTS, ROOT

from attention_course.grading.assemble import student_names

CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()
SECTION = CONTRIBUTING.split("## Adding an assignment", 1)[1].split("\n## ", 1)[0]
PLACES = re.findall(r"^\| `([^`]*<id_?>[^`]*)` \|", SECTION, re.M)


def test_the_checklist_names_the_places():
    assert {
        "solutions/<id>/<id>.ipynb",
        "exercises/<id>/<id>.ipynb",
        "book/assignments/<id>.md",
        "tests/submissions/<id_>.py",
    } <= set(PLACES), PLACES
    fixed = re.findall(r"^\| `([^`<]+)` \|", SECTION, re.M)
    assert {"docs/course-contract.md", "README.md", "CHANGELOG.md"} <= set(fixed), fixed


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_has_every_place(assignment):
    missing = [
        p
        for p in PLACES
        if not (ROOT / p.replace("<id_>", assignment.replace("-", "_")).replace("<id>", assignment)).is_file()
    ]
    assert not missing, f"{assignment} lacks {missing} (CONTRIBUTING.md, Adding an assignment)"
    assert (ROOT / "book" / assignment).is_dir(), f"the assignment id names its chapter's folder: book/{assignment}/"
    toc = (ROOT / "_toc.yml").read_text()
    assert f"file: book/assignments/{assignment}\n" in toc, f"_toc.yml does not list book/assignments/{assignment}"
    readme_rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")]
    assert any(f"`{assignment}`" in row for row in readme_rows), f"README.md's chapters table lacks {assignment}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_answer_name_is_in_the_contract(assignment):
    contract = (ROOT / "docs" / "course-contract.md").read_text()
    source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    names = student_names(source)
    assert names, f"{assignment}: no answer cell defines a name"
    absent = sorted(n for n in names if not re.search(rf"`(class )?{re.escape(n)}[(`]", contract))
    assert not absent, f"{assignment}: {absent} are implemented by students but not in docs/course-contract.md"
