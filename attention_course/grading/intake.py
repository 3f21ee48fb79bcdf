"""Reading a student's submission folder safely: the notebook to grade (also when misnamed or nested), its
bytes (never through a link, bounded), the code files beside it, and the scratch copy the sandbox gets."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from attention_course.grading.assemble import Unreadable
from attention_course.grading.ids import escape

MAX_COPY_BYTES = 50 * 2**20  # other files of a submission folder copied into the sandbox
MAX_NOTEBOOK_BYTES = 20 * 2**20
COMPILED = (".so", ".pyd", ".pyc", ".pyo", ".dylib", ".dll")


def link_in(path: Path, below: Path) -> str | None:
    """The first part of `path` below `below` that is a symbolic link (never followed), else None."""
    current = below
    for part in path.relative_to(below).parts:
        current = current / part
        if current.is_symlink():
            return str(current.relative_to(below))
    return None


def safe_read(path: Path, inside: Path) -> bytes:
    """Bytes of a submitted file, refusing links anywhere on its path below submitted/ (a link to solutions/
    would be read by the trusted grader)."""
    real = Path(os.path.realpath(path))
    link = link_in(path, inside.parent)
    if link or not str(real).startswith(str(Path(os.path.realpath(inside))) + os.sep):
        raise Unreadable(f"{escape(link or path.name, 80)} is a link: links in submitted/ are refused, not followed")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise Unreadable(f"{path.name} is not a regular file")
        data = fh.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise Unreadable(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    return data


def find_notebook(folder: Path, name: str, expected: set[str]) -> tuple[Path | None, str]:
    """The submitted file for notebook `name`; when misnamed, the only other notebook there (with a note)."""
    exact = folder / f"{name}.ipynb"
    if exact.exists() or exact.is_symlink():
        return exact, ""
    found = sorted(
        Path(d) / f
        for d, dirs, files in os.walk(folder, followlinks=False)
        for f in files
        if f.endswith(".ipynb") and ".ipynb_checkpoints" not in Path(d).parts
    )
    nested = [p for p in found if p.name == f"{name}.ipynb"]
    if len(nested) == 1:
        return nested[0], f"found in {nested[0].relative_to(folder).parent}/"
    others = [p for p in found if p.stem not in expected]
    if len(others) == 1:
        return others[0], f"graded {others[0].relative_to(folder)} as {name}.ipynb (misnamed)"
    if others:
        return None, f"missing {name}.ipynb (found {', '.join(str(p.relative_to(folder)) for p in others)}: ambiguous)"
    if folder.exists() and any(folder.iterdir()):
        names = ", ".join(sorted(p.name for p in folder.iterdir())[:5])
        return None, f"missing {name}.ipynb (folder holds: {names})"
    return None, f"missing {name}.ipynb (empty folder)"


def other_files(folder: Path) -> list[Path]:
    """The folder's other regular files (never links, never notebooks), sorted: what a result depends on too."""
    return [
        Path(dirpath) / fname
        for dirpath, _dirnames, filenames in sorted(os.walk(folder, followlinks=False))
        for fname in sorted(filenames)
        if (Path(dirpath) / fname).suffix != ".ipynb"
        and (Path(dirpath) / fname).is_file()
        and not (Path(dirpath) / fname).is_symlink()
    ]


def code_files(folder: Path) -> list[tuple[str, str]]:
    """(path relative to the folder, text) of each `.py` file there: they run too when imported
    (sitecustomize.py even at start), so the static scan reads them."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False):
        for fname in filenames:
            src = Path(dirpath) / fname
            if src.suffix == ".py" and src.is_file() and not src.is_symlink():
                found.append(
                    (str(src.relative_to(folder)), src.read_bytes()[:MAX_NOTEBOOK_BYTES].decode("utf-8", "replace"))
                )
    return found


def copy_folder(folder: Path, work: Path) -> None:
    """A scratch copy of the student's own folder for the sandbox: regular files only, never links, notebooks,
    `.pth` or compiled code (it cannot be checked), at most `MAX_COPY_BYTES` in all."""
    shutil.rmtree(work.parent, ignore_errors=True)
    work.mkdir(parents=True)
    copied = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for fname in filenames:
            src = Path(dirpath) / fname
            if src.is_symlink() or not src.is_file() or src.suffix in (".ipynb", ".pth") + COMPILED:
                continue
            with open(src, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    continue
            size = src.stat().st_size
            if copied + size > MAX_COPY_BYTES:
                continue
            dest = work / src.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            copied += size
