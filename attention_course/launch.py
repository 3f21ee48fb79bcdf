"""The launch copies of the book's pages: what the Colab, Binder and JupyterHub buttons open.

The pages are MyST Markdown notebooks (`book/**/*.md` with a jupytext/kernelspec header), which Colab cannot
open. `make student-repo` therefore writes next to each such page an `.ipynb` made from it with jupytext: no
outputs, nbformat 4.5, fixed cell ids (`attention_course.notebooks.normalize`), so the same page always gives the
same bytes. These copies are generated, never committed to the instructor's repository. The site's launch
buttons point at them (`attention_course.sphinx_fixes`).

One setting says where they are: `repository.url` (and `repository.branch`) in `_config.yml`, the public student
repository. The launch URLs, the repository button and the set-up cell below derive from it.

A page that imports the course package or d2l gets one more cell at the top of its launch copy (only there, not in
the book): where `attention_course` is not importable (Colab opens the single notebook; a JupyterHub may lack the
course's environment), it uses the student repository's copy (the clone that nbgitpuller made, or a fresh
`git clone` beside the notebook) by putting it on `sys.path`, and installs d2l without its pins (as the course's
environment does). In the course's environment and on Binder (`binder/requirements.txt`) it does nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import yaml

from attention_course import notebooks as nbt

ROOT = Path(__file__).resolve().parents[1]
SETUP_CELL_ID = "launch-setup"
NEEDS_SETUP = re.compile(r"^\s*(?:from|import)\s+(?:attention_course|d2l)\b", re.M)

SETUP_TEMPLATE = """\
# Set-up of this launch copy (not part of the book's page). Where the course's packages are not installed (Colab,
# a JupyterHub without the course's environment), use the student repository's `attention_course` and install d2l
# without its pins. In the course's environment and on Binder this does nothing.
import importlib.util, pathlib, subprocess, sys
if importlib.util.find_spec("attention_course") is None:
    here = pathlib.Path.cwd().resolve()
    repo = next((p for p in (here, *here.parents) if (p / "attention_course" / "__init__.py").is_file()), None)
    if repo is None:  # only this notebook was opened (Colab): clone the student repository beside it
        repo = here / {folder}
        if not repo.exists():
            subprocess.run(["git", "clone", "--quiet", "--depth=1", "--branch", {branch}, {url}, str(repo)],
                           check=True)
    sys.path.insert(0, str(repo))
if importlib.util.find_spec("d2l") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", {d2l}], check=True)
    importlib.invalidate_caches()"""


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(URL, branch) of the student repository: `repository.url` and `repository.branch` of `_config.yml`."""
    config = yaml.safe_load((Path(root) / "_config.yml").read_text())
    repo = config.get("repository") or {}
    return str(repo["url"]).rstrip("/"), str(repo.get("branch") or "main")


EXAMPLE_URL = "https://github.com/example-org/attention-from-scratch"


def is_example(url: str) -> bool:
    """Whether `url` is still the example that `_config.yml` ships (no such repository exists)."""
    return str(url).rstrip("/").removesuffix(".git").lower() == EXAMPLE_URL


def github_parts(url: str) -> tuple[str, str]:
    """(org, repo) of a https://github.com/<org>/<repo> URL."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", url)
    if not match:
        raise ValueError(f"repository.url must be a GitHub repository URL (https://github.com/<org>/<repo>): {url}")
    return match.group(1), match.group(2)


def is_notebook_page(path: Path) -> bool:
    """A MyST Markdown notebook: its front matter has a kernelspec (what the theme gives launch buttons)."""
    text = Path(path).read_text()
    if not text.startswith("---\n"):
        return False
    end = text.find("\n---", 4)
    return end > 0 and "kernelspec" in (yaml.safe_load(text[4:end]) or {})


def notebook_pages(root: Path = ROOT) -> list[Path]:
    """The notebook pages under `book/`, relative to `root`, sorted."""
    root = Path(root)
    return sorted(p.relative_to(root) for p in (root / "book").rglob("*.md") if is_notebook_page(p))


def d2l_requirement(root: Path = ROOT) -> str:
    """d2l's pinned requirement, from `requirements-d2l.txt` (installed there with --no-deps too)."""
    for line in (Path(root) / "requirements-d2l.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.lower().startswith("d2l"):
            return line
    raise ValueError("requirements-d2l.txt names no d2l")


def setup_source(root: Path = ROOT) -> str:
    url, branch = repository(root)
    return SETUP_TEMPLATE.format(
        url=json.dumps(url),
        branch=json.dumps(branch),
        folder=json.dumps(github_parts(url)[1]),
        d2l=json.dumps(d2l_requirement(root)),
    )


def code_sources(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def launch_notebook(page: Path, root: Path = ROOT) -> nbformat.NotebookNode:
    """The launch copy of a page (path relative to `root`): jupytext's notebook, normalised, with the set-up cell
    first when the page imports the course package or d2l."""
    import jupytext

    nb = jupytext.read(Path(root) / page, fmt="md:myst")
    if any(NEEDS_SETUP.search(source) for source in code_sources(nb)):
        nb.cells.insert(0, nbformat.v4.new_code_cell(setup_source(root)))
        nb.cells[0]["id"] = SETUP_CELL_ID
    for index, cell in enumerate(nb.cells):
        if cell.get("id") != SETUP_CELL_ID:
            cell["id"] = f"cell-{index:02d}"  # jupytext makes random ids: fixed ones keep the bytes stable
    return nbt.normalize(nb)


def launch_path(page: Path) -> Path:
    return Path(page).with_suffix(".ipynb")


def write_launch_notebooks(dest: Path, root: Path = ROOT) -> list[Path]:
    """Write the launch copy of every notebook page of `root` into `dest` (same relative paths, `.ipynb`)."""
    written = []
    for page in notebook_pages(root):
        target = Path(dest) / launch_path(page)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbt.write(launch_notebook(page, root), target)
        written.append(launch_path(page))
    return written
