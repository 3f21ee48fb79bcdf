"""Synthetic classes for the grading tests and benchmarks: a private course copy, and N students whose answers
are the reference, the rewritten correct answers and the realistic mistakes of the simulated submissions.

The simulated submissions stay the data of tests/submissions/<id>.py (the contributing guide and the leak rules
name that place); they are loaded here by path, as data, so no caller needs tests/ on sys.path. Not published
(tools/ stays out of the student repository)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_course(dest: Path) -> Path:
    """A private copy of the course (config, solutions, exercises) to run nbgrader in."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest


def build_class(course: Path, assignment: str, students: int) -> None:
    """A course copy whose submitted/ holds `students` notebooks of `assignment` (student000, student001, ...)."""
    from attention_course import notebooks as nbt

    copy_course(course)
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    module = simulated(assignment)
    variants = [ref, {**ref, **module.CORRECT}] + [{**ref, cell: src} for cell, src, _ in module.WRONG.values()]
    for i in range(students):
        nb = nbt.with_answers(release, variants[i % len(variants)])
        nbt.write(nb, course / "submitted" / f"student{i:03d}" / assignment / f"{assignment}.ipynb")


def simulated(assignment: str):
    """The module tests/submissions/<id_>.py (CORRECT, WRONG) of an assignment, loaded from its file."""
    import importlib.util

    path = ROOT / "tests" / "submissions" / f"{assignment.replace('-', '_')}.py"
    spec = importlib.util.spec_from_file_location(f"_simulated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
