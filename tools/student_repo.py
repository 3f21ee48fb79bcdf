"""Make the public student repository from this (the instructor's) repository: `make student-repo DEST=<dir>`.

What is copied: every file git tracks or would track (untracked files that .gitignore does not ignore), except
what only the instructor may hold:

- `solutions/` (reference answers and hidden tests), `tests/` (simulated submissions are correct answers),
  `tools/` (authoring and grading aids), `.ci/` and `.github/` (they run those tests);
- grading state, should any of it be tracked by mistake: the gradebook, `submitted/`, `autograded/`,
  `feedback/`, `downloaded/`, `grades.csv` and the LMS grade files, `extensions.csv`, rosters.

Next to each notebook page of `book/` (MyST Markdown with a kernelspec) it writes the page's launch copy, an
`.ipynb` without outputs (`attention_course.launch`): what the site's Colab, Binder and JupyterHub buttons open.
These are generated here only, never committed to the instructor's repository.

Then every file is searched for the reference answers and hidden tests of `solutions/`
(`attention_course.leaks`); one found is an error and DEST is left incomplete on purpose (no `.student-repo`
stamp). DEST may be an existing clone of the student repository: its `.git` is kept and everything else is
replaced, so `git -C DEST add -A && git -C DEST commit` publishes the update.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

from attention_course import launch, leaks

ROOT = Path(__file__).resolve().parents[1]

EXCLUDED_DIRS = (
    "solutions",
    "tests",
    "tools",
    ".ci",
    ".github",
    "submitted",
    "autograded",
    "feedback",
    ".collected",
    "similarity",
    "downloaded",
    "release",
    "outbound",
    "inbound",
    "_build",
    ".venv",
)
EXCLUDED_FILES = (
    ".grading-secret",
    "gradebook.db",
    "gradebook.db-journal",
    "*.db",
    "grades.csv",
    "grades-*.csv",
    "extensions.csv",
    "roster*.csv",
    ".nbgrader.log",
    "nbgrader_exchange*",
    ".git",
    ".gitmodules",
)


def candidate_files(root: Path = ROOT) -> list[Path]:
    """Files git tracks plus untracked ones it does not ignore (relative paths); all files without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [Path(p) for p in out.split("\0") if p]
    except (subprocess.CalledProcessError, FileNotFoundError):
        files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in files if (root / p).is_file())


def is_public(rel: Path) -> bool:
    if rel.parts[0] in EXCLUDED_DIRS or any(part in ("__pycache__", ".ipynb_checkpoints") for part in rel.parts):
        return False
    return not any(fnmatch.fnmatch(rel.name, pattern) for pattern in EXCLUDED_FILES)


def make(dest: Path, root: Path = ROOT) -> list[Path]:
    dest = dest.resolve()
    if dest == root or root in dest.parents and dest.relative_to(root).parts[0] not in ("_build",):
        raise SystemExit(f"DEST must be outside the course repository (or under _build/): {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    for child in dest.iterdir():  # replace everything but an existing clone's history
        if child.name == ".git":
            continue
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    copied = []
    for rel in candidate_files(root):
        if is_public(rel):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, dest / rel)
            copied.append(rel)
    for rel in launch.write_launch_notebooks(dest, root):
        if rel in copied:
            raise SystemExit(f"{rel} is a launch copy generated from its .md page: remove it from the repository")
        copied.append(rel)
    found = leaks.find_leaks(leaks.secrets(root / "solutions"), (p for p in dest.rglob("*") if ".git" not in p.parts))
    if found:
        for path, secret in found[:20]:
            print(f"LEAK {path.relative_to(dest)}: {secret.kind} from {secret.where}: {secret.text!r}", file=sys.stderr)
        raise SystemExit(f"{len(found)} leak(s) of solutions/ in {dest}: not a publishable student repository")
    (dest / ".student-repo").write_text("Made by `make student-repo` from the instructor's repository.\n")
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    copied = make(args.dest)
    print(
        f"student repository: {len(copied)} files in {args.dest} (no solutions/, tests/, tools/, grading state;"
        f" checked for leaks)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
