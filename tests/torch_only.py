"""A Python that can import only what `pip install torch` (plus, for a kernel, `pip install ipykernel`) installs.

The course's virtual environment holds everything (d2l, nbgrader, the course package, installed editable), and
building a second environment with torch from scratch costs gigabytes and minutes. Instead, a child process is
started with `python -I` (no PYTHONPATH, no user site, neither the script's folder nor the working directory on
`sys.path`), and before anything else runs it wraps every finder of `sys.meta_path` in an allow-list filter: a
top-level module may be found only if it belongs to the standard library or to a distribution in the
dependency closure of the roots (`torch`; `ipykernel` for a Jupyter kernel), as declared in the installed
packages' metadata (extras excluded, since `pip install torch` installs none). Everything else (`attention_course`,
`d2l`, `nbgrader`, but also numpy, matplotlib, pandas, which a bare torch install lacks) is not found: importing
it raises `ModuleNotFoundError` and `importlib.util.find_spec` returns None, as in a fresh `pip install torch`
environment. `tests/test_standalone_exercises.py`
checks that the hook works (torch imports, the course's packages do not) before it relies on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from attention_course.jupyter_env import private_home

BOOTSTRAP = r'''
import importlib.metadata as _md
import re as _re
import sys as _sys


def _torch_only_allowed(roots):
    def key(name):
        return _re.sub(r"[-_.]+", "-", name).lower()
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if key(name) in seen:
            continue
        try:
            dist = _md.distribution(name)
        except _md.PackageNotFoundError:
            continue
        seen.add(key(name))
        for requirement in dist.requires or []:
            if "extra ==" in requirement.replace("extra==", "extra =="):
                continue
            todo.append(_re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0])
    allowed = set(_sys.stdlib_module_names) | set(_sys.builtin_module_names)
    for module, dists in _md.packages_distributions().items():
        if any(key(d) in seen for d in dists):
            allowed.add(module)
    return allowed


class _TorchOnlyFilter:
    """Wraps a finder of sys.meta_path: modules a torch-only environment would not have are not found."""

    def __init__(self, inner, allowed):
        self.inner, self.allowed = inner, allowed

    def _has(self, top):
        if top in self.allowed or top in _sys.modules:
            return True
        import importlib.machinery
        import os
        import sysconfig
        stdlib = [sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")]
        stdlib += [os.path.join(folder, "lib-dynload") for folder in stdlib]
        if importlib.machinery.PathFinder.find_spec(top, stdlib) is not None:  # e.g. _sysconfigdata_*
            self.allowed.add(top)
            return True
        return False

    def find_spec(self, name, path=None, target=None):
        if not self._has(name.partition(".")[0]):
            return None                                # as if it were not installed: ModuleNotFoundError
        find = getattr(self.inner, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attribute):                  # invalidate_caches, find_distributions, ...
        return getattr(self.inner, attribute)


_allowed = _torch_only_allowed(ROOTS)
_sys.meta_path[:] = [_TorchOnlyFilter(finder, _allowed) for finder in _sys.meta_path]
del _torch_only_allowed, _TorchOnlyFilter, _allowed
'''


def bootstrap(roots: tuple[str, ...]) -> str:
    """Python source that installs the allow-list hook for the dependency closure of `roots`."""
    return f"ROOTS = {list(roots)!r}\n" + BOOTSTRAP + "del ROOTS\n"


def clean_env(home: Path) -> dict[str, str]:
    """An environment without PYTHONPATH or the course's Jupyter/IPython settings; HOME in a scratch folder."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        **private_home(home),
    }


def kernel_dir(folder: Path) -> Path:
    """A kernelspec folder `folder/kernels/torch-only` whose kernel is the hooked `python -I` with ipykernel."""
    spec = folder / "kernels" / "torch-only"
    spec.mkdir(parents=True, exist_ok=True)
    launcher = spec / "launch.py"
    launcher.write_text(
        bootstrap(("torch", "ipykernel")) + "from ipykernel import kernelapp\nkernelapp.launch_new_instance()\n"
    )
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-I", str(launcher), "-f", "{connection_file}"],
                "display_name": "torch only",
                "language": "python",
            }
        )
    )
    return folder / "kernels"
