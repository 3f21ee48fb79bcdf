"""Building the notebook that is executed for one submission, from the trusted source notebook.

The source notebook in `solutions/` decides what is graded: which cells are tests, their points, their code
(hidden tests included), the locked set-up cells. From the submission only the student's own code is taken:
the answer cells (matched by nbgrader `grade_id`, or by cell id when the metadata was removed) and the
student's other cells (demos, helpers, notes), which keep their place after the graded cell they followed.

So a deleted, edited or re-labelled test cell runs as the source has it; changed metadata or points mean
nothing; a missing answer cell simply defines nothing (its tests fail). Duplicated cells: the first copy is
the graded one, later copies run as the student's own code.
"""
from __future__ import annotations

import ast
import copy
import json
from dataclasses import dataclass, field

import nbformat

from attention_course import notebooks as nbt


class Unreadable(Exception):
    """The submitted file is not a notebook we can grade; the message says why."""


def read_submission(data: bytes) -> nbformat.NotebookNode:
    if not data.strip():
        raise Unreadable("empty file")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable("not a notebook (binary file, not UTF-8 JSON)") from None
    except json.JSONDecodeError as exc:
        raise Unreadable(f"malformed JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise Unreadable("not a notebook (JSON without a list of cells)")
    try:
        nb = nbformat.from_dict(raw)
        if nb.get("nbformat", 4) != 4:
            nb = nbformat.convert(nb, 4)
    except Exception as exc:  # noqa: BLE001 (any failure of nbformat means: not a notebook)
        raise Unreadable(f"not a notebook ({type(exc).__name__})") from None
    cells = []
    for cell in nb.cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(str(s) for s in src)
        if not isinstance(src, str):
            src = ""
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        if cell["cell_type"] == "code":
            new = nbformat.v4.new_code_cell(src)
        elif cell["cell_type"] == "markdown":
            new = nbformat.v4.new_markdown_cell(src)
        else:
            new = nbformat.v4.new_raw_cell(src)
        nbg = meta.get("nbgrader")
        if isinstance(nbg, dict):
            new.metadata["nbgrader"] = nbg
        if isinstance(cell.get("id"), str):
            new["id"] = cell["id"][:64]
        cells.append(new)
    if not any(c.cell_type == "code" and c.source.strip() for c in cells):
        raise Unreadable("empty notebook (no code)")
    return nbformat.from_dict({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@dataclass
class Assembled:
    nb: nbformat.NotebookNode                       # what is executed (origin of each cell in metadata.grading)
    tests: dict[str, int] = field(default_factory=dict)   # graded cell grade_id -> index in nb
    points: dict[str, float] = field(default_factory=dict)
    missing_answers: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)     # test/locked cells absent or altered in the submission


def _visible(source: str) -> str:
    """A test cell as students receive it: nbgrader removes the hidden block, markers included."""
    import re

    return re.sub(r"### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS\n?", "", source, flags=re.S)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _gid(cell) -> str | None:
    gid = nbt.nbgrader_meta(cell).get("grade_id") if isinstance(nbt.nbgrader_meta(cell), dict) else None
    return gid if isinstance(gid, str) else None


def assemble(source: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> Assembled:
    keyed = {}  # grade_id -> source cell, for every cell with nbgrader metadata in the source
    for cell in source.cells:
        gid = _gid(cell)
        if gid and nbt.nbgrader_meta(cell):
            keyed[gid] = cell
    answers = {g for g, c in keyed.items() if nbt.is_answer(c)}
    # match the submission's cells to source cells: by grade_id, else (metadata removed) by cell id
    matched: dict[str, int] = {}
    for i, cell in enumerate(submission.cells):
        gid = _gid(cell)
        if gid in keyed and gid not in matched and keyed[gid].cell_type == cell.cell_type:
            matched[gid] = i
    for i, cell in enumerate(submission.cells):
        cid = cell.get("id")
        if cid in answers and cid not in matched and cell.cell_type == "code" and i not in matched.values():
            matched[cid] = i
    by_index = {i: g for g, i in matched.items()}
    # the student's own cells, attached to the graded cell they follow (None: before any)
    extras: dict[str | None, list] = {}
    anchor = None
    for i, cell in enumerate(submission.cells):
        if i in by_index:
            anchor = by_index[i]
            continue
        own = copy.deepcopy(cell)
        own.metadata = {"grading": {"origin": "student"}}
        extras.setdefault(anchor, []).append(own)
    out = Assembled(nb=nbformat.v4.new_notebook())
    out.nb.metadata = copy.deepcopy(source.metadata)
    cells = list(extras.get(None, []))
    for cell in source.cells:
        gid = _gid(cell)
        if not gid or gid not in keyed:
            continue  # the source's prose and demos: the student's own copies run instead
        if gid in answers:
            if gid not in matched:
                out.missing_answers.append(gid)
                continue
            new = copy.deepcopy(cell)
            new.source = submission.cells[matched[gid]].source
            new.metadata["grading"] = {"origin": "answer", "grade_id": gid}
        else:
            new = copy.deepcopy(cell)
            new.metadata["grading"] = {"origin": "source", "grade_id": gid}
            if gid not in matched or _squash(submission.cells[matched[gid]].source) != _squash(_visible(cell.source)):
                if nbt.nbgrader_meta(cell).get("grade") or cell.cell_type == "code":
                    out.restored.append(gid)
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        new["id"] = f"c{len(cells)}"
        cells.append(new)
        if nbt.nbgrader_meta(cell).get("grade") and cell.cell_type == "code":
            out.tests[gid] = len(cells) - 1
            out.points[gid] = float(nbt.nbgrader_meta(cell).get("points", 0) or 0)
        cells.extend(extras.get(gid, []))
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    out.nb.cells = cells
    return out


def points_of(source: nbformat.NotebookNode) -> dict[str, float]:
    """grade_id -> points of every autograded test cell of the source notebook."""
    return {nbt.nbgrader_meta(c)["grade_id"]: float(nbt.nbgrader_meta(c).get("points", 0) or 0)
            for c in source.cells if nbt.nbgrader_meta(c).get("grade") and c.cell_type == "code"}


def student_names(source: nbformat.NotebookNode) -> set[str]:
    """The names the answer cells of the source notebook define at top level (functions, classes, variables):
    what the test cells use of the student's work, and what the judge looks up in the student's kernel."""
    names: set[str] = set()
    for cell in source.cells:
        if cell.cell_type != "code" or not nbt.is_answer(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


# --- a static look at the student's code for attempts to change the grading environment -------------------
# Since the tests run in the judge (judge.py), nothing here changes a score: findings are listed for the
# instructor to review (summary, grades.csv reason, feedback is unaffected).

PROTECTED_ROOTS = {"torch", "np", "numpy", "builtins", "__builtins__", "sys", "IPython", "math", "unittest",
                   "pytest", "attention_course", "nbgrader", "ipykernel", "traceback", "inspect", "gc", "importlib",
                   "F", "nn", "scipy", "operator", "functools"}
JUDGE_ATTRS = {"assert_close", "assert_allclose", "allclose", "isclose", "equal", "testing", "assert_equal",
               "assert_array_equal", "assert_array_almost_equal", "isfinite", "all", "any", "eq", "ne"}
BUILTIN_NAMES = {"exec", "eval", "compile", "__import__", "globals", "breakpoint", "vars"}  # as bare names only
FORBIDDEN_NAMES = {"get_ipython", "__builtins__", "builtins", "ctypes", "importlib", "gc", "inspect", "settrace",
                   "setprofile", "_getframe", "modules", "__subclasses__", "__globals__", "__code__", "__closure__",
                   "__bases__", "__mro__", "f_globals", "f_locals", "f_back", "f_code", "tb_frame", "__dict__",
                   "input_transformers_cleanup", "input_transformers_post", "ast_transformers", "set_custom_exc",
                   "register_magic_function", "showtraceback", "marshal", "atexit", "__class__",
                   "__torch_function__", "__torch_dispatch__", "TorchFunctionMode", "TorchDispatchMode",
                   "__setattr__", "__delattr__", "__getattribute__", "__loader__", "__spec__", "__reduce__",
                   "__reduce_ex__", "__self__", "__func__", "__wrapped__", "__defaults__", "__kwdefaults__",
                   "__objclass__", "library", "Library", "custom_op", "register_kernel", "_C", "overrides",
                   "excepthook", "displayhook", "meta_path", "path_hooks", "addaudithook"}
ALLOWED_MAGICS = ("%time ", "%timeit ", "%%time", "%%timeit", "%matplotlib ")


def _stored_root(node) -> str | None:
    """The name an attribute/subscript store lands in; None when it lands in a call's result (a new object)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _root_name(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def tamper_findings(source: str, where: str) -> list[str]:
    """What in this code could change how other code is judged (patching modules or comparison functions,
    IPython hooks, tracing, frames, dynamic code), as 'WHERE line N: what'. Empty for ordinary numerical code."""
    findings = []
    python_lines = []
    for n, line in enumerate(source.splitlines(), 1):
        stripped = line.lstrip()
        if stripped.startswith(ALLOWED_MAGICS):
            python_lines.append(line[: len(line) - len(stripped)] + stripped.split(None, 1)[-1]
                                if " " in stripped else "")
        elif stripped.startswith(("!", "%")):
            findings.append(f"{where} line {n}: IPython magic or shell escape `{stripped[:40]}`")
            python_lines.append("")
        else:
            python_lines.append(line)
    try:
        tree = ast.parse("\n".join(python_lines))
    except SyntaxError:
        return findings  # it cannot run, so it cannot tamper: it earns what its errors earn
    docstrings = _docstrings(tree)
    protected = set(PROTECTED_ROOTS)
    for node in ast.walk(tree):  # aliases of modules: `import torch.testing as tt`, `t = torch.testing`
        if isinstance(node, ast.Import):
            protected.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            protected.update(a.asname or a.name for a in node.names if not a.name[:1].islower() or a.name in
                             ("testing", "functional", "nn", "linalg"))
        elif isinstance(node, ast.Assign) and _root_name(node.value) in protected and \
                not isinstance(node.value, ast.Call):
            protected.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            stored = []
            for target in targets:
                stack = [target]
                while stack:  # a, (b.c, d[0]) = ...: the stored targets themselves, not what they read
                    t = stack.pop()
                    if isinstance(t, (ast.Tuple, ast.List)):
                        stack.extend(t.elts)
                    elif isinstance(t, ast.Starred):
                        stack.append(t.value)
                    else:
                        stored.append(t)
            for target in stored:
                for t in [target]:
                    if isinstance(t, (ast.Attribute, ast.Subscript)):
                        root = _stored_root(t)
                        attr = t.attr if isinstance(t, ast.Attribute) else ""
                        if root in protected or attr in JUDGE_ATTRS or (root != "self" and attr.startswith("__")):
                            findings.append(f"{where} line {line}: assigns to `{ast.unparse(t)[:60]}`")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            first = node.args[0] if node.args else None
            if not isinstance(first, (ast.Name, ast.Attribute)) or _root_name(first) in protected:
                findings.append(f"{where} line {line}: `{node.func.id}` on `{ast.unparse(first)[:40] if first else ''}`")
        elif isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or node.id in BUILTIN_NAMES):
            findings.append(f"{where} line {line}: uses `{node.id}`")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES:
            findings.append(f"{where} line {line}: uses `.{node.attr}`")
        elif isinstance(node, ast.alias) and node.name.split(".")[0] in FORBIDDEN_NAMES | {"IPython", "builtins"}:
            findings.append(f"{where} line {line}: imports `{node.name}`")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_NAMES | {"IPython", "sys"}:
            findings.append(f"{where} line {line}: imports from `{node.module}`")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and any(
                word in node.value for word in ("get_ipython", "transformers", "assert_close", "allclose", "__")):
            if node.value.strip() and "__main__" not in node.value and id(node) not in docstrings:
                findings.append(f"{where} line {line}: string naming internals `{node.value[:40]}`")
    seen, unique = set(), []
    for f in findings:
        if f not in seen:
            seen.add(f)
            unique.append(f)
    return unique


def _docstrings(tree) -> set[int]:
    """ids of the string constants that are docstrings (found in one pass: the scan stays linear)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found
