"""`make student-repo DEST=...` gives what students may see: the book, the exercises, the course package and the
environment, without solutions/, tests/, tools/ or grading state, and with nothing of solutions/ inside."""

from __future__ import annotations

import filecmp
import os
import shutil

import pytest
import yaml
from helpers import ASSIGNMENTS, ROOT, run
from sitebuild import toc_pages

from attention_course import leaks
from tools import student_repo


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    dest = tmp_path_factory.mktemp("student") / "attention-student"
    (dest / ".git").mkdir(parents=True)  # an existing clone: its history is kept
    (dest / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (dest / "stale.md").write_text("from an older release\n")
    run(["make", "--no-print-directory", "student-repo", f"DEST={dest}"], cwd=ROOT)
    return dest


def test_instructor_only_files_are_left_out(student):
    for name in (
        "solutions",
        "tests",
        "tools",
        "submitted",
        "autograded",
        "feedback",
        "gradebook.db",
        "grades.csv",
        ".venv",
        "_build",
    ):
        assert not (student / name).exists(), f"{name} must not be in the student repository"
    assert not list(student.rglob("*.db")) and not list(student.rglob("__pycache__"))
    assert not (student / "stale.md").exists(), "files of the previous release must be replaced"
    assert (student / ".git" / "HEAD").is_file(), "an existing clone's .git must be kept"


def test_students_get_the_book_exercises_and_environment(student):
    for name in (
        "_config.yml",
        "_toc.yml",
        "references.bib",
        "nbgrader_config.py",
        "requirements.txt",
        "requirements.lock",
        "pyproject.toml",
        "Makefile",
        "attention_course/__init__.py",
        "binder/requirements.txt",
        "binder/postBuild",
        "binder/runtime.txt",
        "requirements-d2l.txt",
    ):
        assert (student / name).is_file(), f"{name} missing from the student repository"
    assert os.access(student / "binder" / "postBuild", os.X_OK), "Binder runs binder/postBuild only if executable"
    for page in toc_pages():
        assert any((student / f"{page}{suffix}").is_file() for suffix in (".md", ".ipynb")), f"{page} missing"
    for assignment in ASSIGNMENTS:
        rel = f"exercises/{assignment}/{assignment}.ipynb"
        assert filecmp.cmp(ROOT / rel, student / rel, shallow=False), f"{rel} differs from the released one"
    config = yaml.safe_load((student / "_config.yml").read_text())
    assert config["repository"]["url"] == yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_student_repository_holds_no_reference_answer_or_hidden_test(student):
    secrets = leaks.secrets(ROOT / "solutions")
    files = [p for p in student.rglob("*") if ".git" not in p.relative_to(student).parts]
    found = leaks.find_leaks(secrets, files)
    assert not found, "\n".join(f"{p.relative_to(student)}: {s.kind} from {s.where}" for p, s in found[:10])
    for path in files:
        if path.suffix in (".ipynb", ".md", ".py"):
            text = path.read_text(errors="replace")
            assert "### BEGIN HIDDEN TESTS\n" not in text, f"{path}: hidden tests"


def test_a_leak_stops_the_release(tmp_path):
    """A page that prints a reference answer makes `make student-repo` fail instead of publishing it."""
    from attention_course import notebooks as nbt

    fake = tmp_path / "course"
    shutil.copytree(ROOT / "solutions", fake / "solutions")
    shutil.copytree(ROOT / "exercises", fake / "exercises")
    solution = nbt.read(next((ROOT / "solutions").glob("*/*.ipynb")))
    answer = next(iter(nbt.answer_cells(solution).values())).source
    (fake / "book").mkdir()
    (fake / "book" / "page.md").write_text("# A page\n\n```python\n" + nbt.strip_markers(answer) + "\n```\n")
    with pytest.raises(SystemExit, match="leak"):
        student_repo.make(tmp_path / "out", root=fake)
    assert not (tmp_path / "out" / ".student-repo").exists()
