"""The pages keep the one notation of book/notation.md: vectors are rows (projections on the right, dot products
q k^T), h is the head count only (never a hidden size), m the online softmax's running maximum only (never a
count of keys or a position), and every page's math says so consistently."""

import re

import pytest
from helpers import ROOT

PAGES = sorted((ROOT / "book").rglob("*.md"))


def math_of(text: str) -> str:
    """The page's math ($...$ and $$...$$), without code cells."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return "\n".join(m.group(0) for m in re.finditer(r"\$\$.*?\$\$|\$[^$\n]+\$", prose, flags=re.S))


COLUMN_HABITS = {
    "a matrix times a vector on its left (column vectors)": (
        r"\\mathbf\{W\}(_\{?\w+\}?)?(\^\{?\(\w\)\}?)?\s*\\mathbf\{[a-z]\}"
    ),
    "a dot product written q^T k (column vectors)": r"\\mathbf\{[a-z]\}\^\\top\s*(R_\{?[^}]*\}?\s*)?\\mathbf\{[a-z]\}",
    "m as a count of keys": r"\\mathbf\{[kv]\}_m\b|\\sum_\{\w=1\}\^\{?m\b",
    "h as a size of hidden units": r"\\mathbb\{R\}\^\{h\s*\\times|\\mathbb\{R\}\^\{h\}",
}


def test_the_notation_page_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    assert "file: book/notation" in toc
    assert (ROOT / "book" / "notation.md").is_file()


@pytest.mark.parametrize("habit", sorted(COLUMN_HABITS))
def test_no_page_drifts_from_the_notation(habit):
    pattern = re.compile(COLUMN_HABITS[habit])
    found = []
    for page in PAGES:
        for hit in pattern.finditer(math_of(page.read_text())):
            found.append(f"{page.relative_to(ROOT)}: {hit.group(0)!r}")
    assert not found, f"{habit}:\n" + "\n".join(found)


def test_the_checks_see_the_old_habits():
    """The patterns find what the pages used to write (so a pass above means something)."""
    old = r"""$a(\mathbf{q}, \mathbf{k}) = \mathbf{w}_v^\top \tanh(\mathbf{W}_q\mathbf{q} + \mathbf{W}_k\mathbf{k})$
    $\mathbf{q}^\top\mathbf{k}$ and $\mathbf{q}^\top R_{n-m} \mathbf{k}$ and $(\mathbf{k}_m, \mathbf{v}_m)$
    $\mathbf{W}_q \in \mathbb{R}^{h\times d_q}$ $\sum_{i=1}^{m} \alpha$"""
    for habit, pattern in COLUMN_HABITS.items():
        assert re.search(pattern, math_of(old)), habit
