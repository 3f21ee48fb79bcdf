"""The static scan: a look at the student's code for attempts to change the grading environment.

Since the tests run in the judge (judge.py), nothing here changes a score: findings are listed for the
instructor to review (the summary, the `reason` column of grades.csv; feedback is unaffected). `--trust`
clears a submission's flag once reviewed.

It is also the second half of the in-kernel checks' rule (forbidden built-ins, `checks.forbid`): a way around
them either fails the check or is flagged here. So it flags every route around a check that watches the
student's own process: threads and processes started by answer code (their work is not the calling thread's),
torch's private modules and attributes (its mode stacks, dispatch and decompositions), any reference to the
course's own modules (`attention_course`: the checks, the agent), rebinding attributes of imported modules, and
dynamic code (exec/eval/compile/__import__/importlib, getattr with a computed or private name, globals()/vars()).
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
# modules whose use starts threads or processes (work another thread does escapes a per-thread check)
CONCURRENCY_MODULES = {
    "threading",
    "_thread",
    "concurrent",
    "multiprocessing",
    "subprocess",
    "pty",
    "asyncio",
    "socketserver",  # ThreadingMixIn
    "sched",
}
# stdlib names that start a thread of their own (logging.handlers.QueueListener runs its handlers in one)
THREAD_STARTERS = {"QueueListener", "ThreadingMixIn", "ThreadingTCPServer", "ThreadingUDPServer", "ThreadingHTTPServer"}
# numerical libraries other than torch: their work runs outside every torch check (the exercises are torch only)
# Array libraries whose work no torch operator check sees (numpy included: a score matrix computed in numpy, in a
# buffer allocated before the call, escapes both the operator check and the memory bound; answers are torch only)
OTHER_NUMERICS = {"numpy", "scipy", "jax", "jaxlib", "tensorflow", "numba", "cupy", "mlx", "sklearn", "autograd"}
LEAVE_TORCH = {"numpy", "__array__", "__array_interface__", "__dlpack__"}  # a tensor's data handed to another library
CONCURRENCY_NAMES = {
    "fork",
    "forkpty",
    "register_at_fork",
    "posix_spawn",
    "posix_spawnp",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "popen",
    "system",
    "Popen",
    "start_new_thread",
    "Thread",
    "Timer",
    "Process",
    "ThreadPoolExecutor",
    "ProcessPoolExecutor",
    "to_thread",
    "run_in_executor",
    "set_num_interop_threads",
    *THREAD_STARTERS,
}
# torch's own ways to leave a mode or a check (private names are flagged anyway; these are public or aliased)
MODE_NAMES = {
    "DisableTorchFunction",
    "DisableTorchFunctionSubclass",
    "_DisableTorchDispatch",
    "_disabled_torch_function_impl",
    "_python_dispatch",
    "_pop_mode",
    "_push_mode",
    "_pop_mode_temporarily",
    "_disable_current_modes",
    "_set_torch_function_mode",
    "_pop_torch_function_stack",
    "_push_on_torch_function_stack",
    "no_dispatch",
    "enable_reentrant_dispatch",
    "python_dispatcher",
    "_decomp",
    "_refs",
    "_prims",
    "jit",
    "compile",
}
COURSE_PACKAGE = "attention_course"


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
    torch_names = {"torch", "F", "nn"}  # names of torch's modules here (their private attributes are flagged)
    for node in ast.walk(tree):  # aliases of modules: `import torch.testing as tt`, `t = torch.testing`
        if isinstance(node, ast.Import):
            protected.update((a.asname or a.name).split(".")[0] for a in node.names)
            torch_names.update(
                (a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "torch"
            )
        elif isinstance(node, ast.ImportFrom):
            root = (node.module or "").split(".")[0]
            protected.update(
                a.asname or a.name
                for a in node.names
                if not a.name[:1].islower()
                or a.name in ("testing", "functional", "nn", "linalg")
                or root in ("torch", COURSE_PACKAGE, "os", "sys", "numpy")  # a module's own objects
            )
            if root == "torch":
                torch_names.update(a.asname or a.name for a in node.names)
        elif (
            isinstance(node, ast.Assign)
            and _root_name(node.value) in protected
            and not isinstance(node.value, ast.Call)
        ):
            protected.update(t.id for t in node.targets if isinstance(t, ast.Name))
            if _root_name(node.value) in torch_names:
                torch_names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    findings += _escape_findings(tree, where, torch_names, protected)
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


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _escape_findings(tree, where: str, torch_names: set[str], protected: set[str]) -> list[str]:
    """Ways around the in-kernel checks (forbidden built-ins): threads and processes, torch's private modes and
    dispatch, the course's check machinery, dynamic attribute names."""
    findings = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
            for module in modules:
                parts = module.split(".")
                if parts[0] in CONCURRENCY_MODULES or module == "torch.multiprocessing":
                    findings.append(f"{where} line {line}: starts threads or processes (imports `{module}`)")
                if parts[0] == COURSE_PACKAGE:
                    findings.append(f"{where} line {line}: imports the course's own `{module}`")
                if parts[0] in OTHER_NUMERICS:
                    findings.append(f"{where} line {line}: computes outside torch's checks (imports `{module}`)")
                if parts[0] == "torch" and any(p.startswith("_") or p in MODE_NAMES | {"overrides"} for p in parts):
                    findings.append(f"{where} line {line}: imports torch's internals `{module}`")
            for name in names:
                if name in CONCURRENCY_NAMES:
                    findings.append(f"{where} line {line}: starts threads or processes (imports `{name}`)")
                if (modules[0].split(".")[0] == "torch" and name.startswith("_")) or name in MODE_NAMES - {
                    "jit",
                    "compile",
                }:
                    findings.append(f"{where} line {line}: imports torch's internals `{name}`")
                if name == COURSE_PACKAGE or name in ("checks", "grading", "agent") and modules[0] == COURSE_PACKAGE:
                    findings.append(f"{where} line {line}: imports the course's own `{name}`")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            root = dotted.split(".")[0] if dotted else None
            if node.attr in CONCURRENCY_NAMES and (root != "self" or node.attr in ("fork", "Thread", "Process")):
                findings.append(f"{where} line {line}: starts threads or processes (`{dotted or node.attr}`)")
            elif root in torch_names and node.attr.startswith("_") and not node.attr.startswith("__"):
                findings.append(f"{where} line {line}: uses torch's private `{dotted[:60]}`")
            elif root in torch_names and node.attr in MODE_NAMES:
                findings.append(f"{where} line {line}: uses torch's `{dotted[:60]}` (modes, dispatch, compiling)")
            elif node.attr in LEAVE_TORCH:
                findings.append(f"{where} line {line}: computes outside torch's checks (`.{node.attr}`)")
        elif isinstance(node, ast.Name):
            if node.id == COURSE_PACKAGE:
                findings.append(f"{where} line {line}: refers to the course's own package `{COURSE_PACKAGE}`")
            elif node.id in MODE_NAMES - {"jit", "compile"} or node.id in CONCURRENCY_NAMES - {"system"}:
                findings.append(f"{where} line {line}: uses `{node.id}`")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if COURSE_PACKAGE in node.value or any(
                word in node.value for word in ("_python_dispatch", "torch._C", "overrides", "_disabled_torch")
            ):
                findings.append(f"{where} line {line}: string naming internals `{node.value[:40]}`")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2:
                attr = node.args[1]
                owner = node.args[0]
                own_object = isinstance(owner, (ast.Name, ast.Attribute)) and _root_name(owner) not in protected
                if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                    if not own_object:
                        findings.append(f"{where} line {line}: `{name}` with a computed name")
                elif (attr.value[:1] == "_" and attr.value[:2] != "__") or attr.value in MODE_NAMES | CONCURRENCY_NAMES:
                    findings.append(f"{where} line {line}: `{name}` of `{attr.value[:40]}`")
    return findings


def _docstrings(tree) -> set[int]:
    """ids of the string constants that are docstrings (found in one pass: the scan stays linear)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found
