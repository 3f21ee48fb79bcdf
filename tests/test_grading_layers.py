"""The grading package as layers: its imports (module level and inside functions) form no circle, and nothing but
the CLI imports the orchestrator (`grade.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "attention_course" / "grading"
PREFIX = "attention_course.grading"


def imports() -> dict[str, set[str]]:
    """module -> the grading modules it imports (anywhere in its body; `if TYPE_CHECKING:` ones aside)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == PREFIX:
                    found |= {alias.name for alias in node.names}
                elif node.module.startswith(PREFIX + "."):
                    found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith(PREFIX + ".")}
        graph[path.stem] = found - {path.stem}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state and (found := visit(nxt, trail + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_the_grading_imports_form_no_circle():
    found = cycle(imports())
    assert found is None, " -> ".join(found or [])


def test_only_the_cli_imports_grade():
    importers = sorted(m for m, deps in imports().items() if "grade" in deps)
    assert importers == ["cli"], importers
