"""Answers that copy code another assignment provides (flagged for review; scores unaffected).

An assignment that needs an earlier one's module gets it in a locked *provided* cell (course contract: the earlier
one is past due). `multi-head` provides `dot_product_attention`, which does the work of `scoring-functions`'
`masked_softmax` and `DotProductAttention`. The course is open, so a student on an extension can read it; the
grader then shows the instructor an answer whose function or method is that provided code with other names
(the same syntax tree once docstrings, comments and every name it binds are set aside; attribute names such as
`torch.softmax` are kept, they are what the code does).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import nbformat

from attention_course import notebooks as nbt

Definition = ast.FunctionDef | ast.AsyncFunctionDef


class _Anonymise(ast.NodeTransformer):
    """Every name a definition binds or reads becomes `_`, docstrings go; attribute names stay."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id="_", ctx=node.ctx), node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return ast.copy_location(ast.arg(arg="_", annotation=None), node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:] or [ast.Pass()]
        node = ast.FunctionDef(
            name="_",
            args=node.args,
            body=body,
            decorator_list=[],
            returns=None,
            type_params=[],
            lineno=node.lineno,  # type: ignore[call-arg]
        )
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]


def shape(definition: Definition) -> str:
    """The definition without its names, docstring and annotations, as `ast.dump` text."""
    copy = ast.parse(ast.unparse(definition)).body[0]
    return ast.dump(_Anonymise().visit(copy), annotate_fields=False, include_attributes=False)


def _definitions(source: str) -> list[Definition]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@functools.lru_cache(maxsize=32)
def provided_elsewhere(source_dir: Path, assignment: str) -> dict[str, str]:
    """shape -> "<assignment>'s provided `<name>`" for every function that the locked, pointless cells of the
    other assignments' source notebooks define (their set-up and provided cells)."""
    found: dict[str, str] = {}
    try:
        others = sorted(p for p in Path(source_dir).iterdir() if p.is_dir() and p.name != assignment)
    except OSError:
        return found
    for other in others:
        for path in sorted(other.glob("*.ipynb")):
            try:
                cells = nbformat.read(str(path), as_version=4).cells
            except Exception:  # another assignment's unreadable source is no reason to stop grading this one
                continue
            for cell in cells:
                if cell.cell_type != "code" or not nbt.is_setup(cell):
                    continue
                for definition in _definitions(cell.source):
                    if sum(isinstance(n, ast.stmt) for n in ast.walk(definition)) >= 5:  # a few lines: no answer
                        found.setdefault(shape(definition), f"{other.name}'s provided `{definition.name}`")
    return found


def copy_findings(source: str, where: str, provided: dict[str, str]) -> list[str]:
    """'WHERE line N: is <assignment>'s provided `<name>` with other names' for each copied definition."""
    return [
        f"{where} line {d.lineno}: `{d.name}` is {provided[s]} with other names (copied code)"
        for d in _definitions(source)
        if (s := shape(d)) in provided
    ]
