"""The static scan: a look at the student's code for attempts to change the grading environment.

Since the tests run in the judge (judge.py), nothing here changes a score: findings are listed for the
instructor to review (the summary, the `reason` column of grades.csv; feedback is unaffected). `--trust`
clears a submission's flag once reviewed.
"""

from __future__ import annotations

import ast

PROTECTED_ROOTS = {
    "torch",
    "np",
    "numpy",
    "builtins",
    "__builtins__",
    "sys",
    "IPython",
    "math",
    "unittest",
    "pytest",
    "attention_course",
    "nbgrader",
    "ipykernel",
    "traceback",
    "inspect",
    "gc",
    "importlib",
    "F",
    "nn",
    "scipy",
    "operator",
    "functools",
}
JUDGE_ATTRS = {
    "assert_close",
    "assert_allclose",
    "allclose",
    "isclose",
    "equal",
    "testing",
    "assert_equal",
    "assert_array_equal",
    "assert_array_almost_equal",
    "isfinite",
    "all",
    "any",
    "eq",
    "ne",
}
BUILTIN_NAMES = {"exec", "eval", "compile", "__import__", "globals", "breakpoint", "vars"}  # as bare names only
FORBIDDEN_NAMES = {
    "get_ipython",
    "__builtins__",
    "builtins",
    "ctypes",
    "importlib",
    "gc",
    "inspect",
    "settrace",
    "setprofile",
    "_getframe",
    "modules",
    "__subclasses__",
    "__globals__",
    "__code__",
    "__closure__",
    "__bases__",
    "__mro__",
    "f_globals",
    "f_locals",
    "f_back",
    "f_code",
    "tb_frame",
    "__dict__",
    "input_transformers_cleanup",
    "input_transformers_post",
    "ast_transformers",
    "set_custom_exc",
    "register_magic_function",
    "showtraceback",
    "marshal",
    "atexit",
    "__class__",
    "__torch_function__",
    "__torch_dispatch__",
    "TorchFunctionMode",
    "TorchDispatchMode",
    "__setattr__",
    "__delattr__",
    "__getattribute__",
    "__loader__",
    "__spec__",
    "__reduce__",
    "__reduce_ex__",
    "__self__",
    "__func__",
    "__wrapped__",
    "__defaults__",
    "__kwdefaults__",
    "__objclass__",
    "library",
    "Library",
    "custom_op",
    "register_kernel",
    "_C",
    "overrides",
    "excepthook",
    "displayhook",
    "meta_path",
    "path_hooks",
    "addaudithook",
}
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
            python_lines.append(
                line[: len(line) - len(stripped)] + stripped.split(None, 1)[-1] if " " in stripped else ""
            )
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
            protected.update(
                a.asname or a.name
                for a in node.names
                if not a.name[:1].islower() or a.name in ("testing", "functional", "nn", "linalg")
            )
        elif (
            isinstance(node, ast.Assign)
            and _root_name(node.value) in protected
            and not isinstance(node.value, ast.Call)
        ):
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
                findings.append(
                    f"{where} line {line}: `{node.func.id}` on `{ast.unparse(first)[:40] if first else ''}`"
                )
        elif isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or node.id in BUILTIN_NAMES):
            findings.append(f"{where} line {line}: uses `{node.id}`")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES:
            findings.append(f"{where} line {line}: uses `.{node.attr}`")
        elif isinstance(node, ast.alias) and node.name.split(".")[0] in FORBIDDEN_NAMES | {"IPython", "builtins"}:
            findings.append(f"{where} line {line}: imports `{node.name}`")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_NAMES | {
            "IPython",
            "sys",
        }:
            findings.append(f"{where} line {line}: imports from `{node.module}`")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(word in node.value for word in ("get_ipython", "transformers", "assert_close", "allclose", "__"))
        ):
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
