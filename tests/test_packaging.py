"""`pip install .` tells the truth: the wheel holds the grader, declares what the code imports, and grades a class.

A wheel is built from this checkout; its metadata must name a distribution for every third-party module that
`attention_course` imports (extras for the optional ones), and a course copy with no `attention_course/` folder,
importing the package only from the installed wheel, must grade a simulated class with every score right.
"""

from __future__ import annotations

import ast
import email
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from helpers import ROOT, gradebook_scores, run, write_class

PACKAGE = ROOT / "attention_course"
# Imported only by the parts an extra installs: extra -> top-level modules.
OPTIONAL = {"cluster": {"dask", "distributed"}, "book": {"IPython", "docutils", "jupytext", "sphinx", "yaml"}}
# Imported, on purpose not declared: module -> why.
UNDECLARED = {"d2l": "d2l 1.0.3 pins numpy 1.23 and matplotlib 3.7; installed with --no-deps (requirements-d2l.txt)"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, tree = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):  # built from a copy: setuptools writes build/ into the tree
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(PACKAGE, tree / "attention_course", ignore=shutil.ignore_patterns("__pycache__"))
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(tree),
        ],
        cwd=tree,
        timeout=300,
    )
    (built,) = out.glob("attention_course-*.whl")
    return built


def third_party_imports() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("attention_course", "__future__")}


def test_the_wheel_holds_every_module_of_the_package(wheel):
    inside = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    assert expected - inside == set(), "modules missing from the wheel (packages in pyproject.toml)"
    assert "attention_course/grading/judge.py" in inside


def test_the_wheel_declares_what_the_code_imports(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (meta_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(zf.read(meta_name))
    required: dict[str, str | None] = {}  # distribution (normalised) -> extra or None
    for line in meta.get_all("Requires-Dist") or []:
        name = line.split(";")[0].split("[")[0]
        for sep in "=<>!~ ":
            name = name.split(sep)[0]
        extra = line.split("extra ==")[1].strip().strip("'\"") if "extra ==" in line else None
        required[name.lower().replace("_", "-")] = extra
    providers = metadata.packages_distributions()
    undeclared = []
    for module in sorted(third_party_imports()):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists, f"{module!r} is imported by attention_course but no installed distribution provides it"
        declared = {required[d] for d in dists if d in required}
        optional_in = {extra for extra, modules in OPTIONAL.items() if module in modules}
        if None in declared or declared & optional_in or module in UNDECLARED:
            continue
        undeclared.append(f"{module} (from {', '.join(sorted(dists))})")
    assert not undeclared, f"imported but not declared in pyproject.toml's dependencies: {undeclared}"


@pytest.mark.slow
@pytest.mark.sandbox
def test_a_course_without_the_package_grades_with_the_installed_wheel(wheel, tmp_path):
    from attention_course.grading.sandbox import available

    why = available()
    if why and not os.environ.get("CI"):
        pytest.skip(f"no sandbox here: {why}")
    site = tmp_path / "site"
    run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        cwd=tmp_path,
        timeout=300,
    )
    assignment = "attention-pooling"
    course = tmp_path / "course"
    students = write_class(assignment, course)
    assert not (course / "attention_course").exists()
    env = {**os.environ, "PYTHONPATH": str(site)}  # not the checkout: the package comes from the wheel alone
    where = subprocess.run(
        [sys.executable, "-c", "import attention_course.grading.judge as j; print(j.__file__)"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site), f"the grader was imported from {where}, not from the wheel"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "attention_course.grading",
            "--course",
            str(course),
            "grade",
            assignment,
            "--jobs",
            "2",
            "--no-progress",
            "--cell-timeout",
            "25",
        ],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scores = gradebook_scores(assignment, course, students)
    wrong = []
    for student, (_, losing) in students.items():
        cells = scores[assignment, student]
        for cell, (score, max_score) in cells.items():
            loses = losing is None or cell in losing
            if (score < max_score) != loses:
                wrong.append(f"{student}/{cell}: {score}/{max_score}, expected to {'lose' if loses else 'keep'}")
    assert not wrong, "\n".join(wrong)
    assert (course / "grades.csv").exists() and any((course / "feedback").rglob("*.html"))
