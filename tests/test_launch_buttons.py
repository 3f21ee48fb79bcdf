"""The launch buttons work: they open files that the student repository has, in an environment it describes.

- `make student-repo` writes a launch copy `<page>.ipynb` beside every notebook page (`attention_course.launch`):
  regenerating gives the same bytes, it holds the page's code cells (read here from the Markdown itself), no
  outputs, nbformat 4.5; the set-up cell is there exactly when the page imports the course package or d2l.
- The theme's own URL code (sphinx-book-theme's `add_launch_buttons`) followed by the course's fix
  (`attention_course.sphinx_fixes`) gives Colab, Binder and JupyterHub URLs that name the launch copy, on the
  repository and branch of `_config.yml`'s one setting.
- In the built site, every launch URL, repository link and `.ipynb` download of every page resolves to a file:
  in the student repository (launch and repository links) or in the site (downloads, whose code is the page's).
- The pages run in an environment made only from the student repository's own instructions: a fresh venv,
  `pip install -r binder/requirements.txt` and `binder/postBuild`, as Binder does; and the set-up cell makes a
  launch copy run where neither the course package nor d2l is installed (Colab), cloning the repository.
"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest
from helpers import ROOT, run
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from sitebuild import built_html, toc_pages
from torch_only import clean_env

from attention_course import launch
from tools import student_repo

URL, BRANCH = launch.repository()
LAUNCH_HOSTS = ("colab.research.google.com", "mybinder.org")
ORG, REPO = launch.github_parts(URL)
PAGES = [str(p) for p in launch.notebook_pages()]
# Representative pages for the fresh environment: d2l only; the course package and d2l (modern attention); the
# course package reading exercises/ beside it; pandas and benchmarks/results.json.
RUN_PAGES = [
    "book/attention-pooling/nadaraya-watson.md",
    "book/modern-attention/kv-cache.md",
    "book/assignments/attention-pooling.md",
    "book/performance.md",
]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    dest = tmp_path_factory.mktemp("launch") / REPO
    student_repo.make(dest)
    return dest


# --- the launch copies -------------------------------------------------------------------------------------------


def page_code_cells(page: Path) -> list[str]:
    """The code of a MyST page's `{code-cell}` blocks, options (`:key: value` lines or a `---` block) removed."""
    cells = []
    for body in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", page.read_text(), re.M | re.S):
        if body.startswith("---\n"):
            body = body[body.index("\n---\n", 3) + 5 :]
        else:
            while re.match(r":[\w-]+:", body):
                body = body.split("\n", 1)[1] if "\n" in body else ""
        cells.append(body.rstrip("\n"))
    return cells


def test_launch_copies_are_generated_not_committed():
    committed = subprocess.run(
        ["git", "ls-files", "book"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [p for p in committed if p.endswith(".ipynb")], "book/ must hold no .ipynb: they are generated"
    assert len(PAGES) >= 30 and "book/modern-attention/kv-cache.md" in PAGES, PAGES


def test_every_notebook_page_has_its_launch_copy(student):
    for page in PAGES:
        path = student / Path(page).with_suffix(".ipynb")
        assert path.is_file(), f"{path.relative_to(student)} missing"
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert (nb.nbformat, nb.nbformat_minor) == (4, 5), page
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{page}: outputs"
        imports_course = any(launch.NEEDS_SETUP.search(src) for src in page_code_cells(ROOT / page))
        has_setup = bool(code) and code[0].get("id") == launch.SETUP_CELL_ID
        assert has_setup == imports_course, f"{page}: set-up cell {has_setup}, imports the course {imports_course}"
        own = [c.source for c in code[1:]] if has_setup else [c.source for c in code]
        assert own == page_code_cells(ROOT / page), f"{page}: the launch copy's code differs from the page's"
        assert len(own) >= 1, page
        if has_setup:
            assert json.dumps(URL) in code[0].source and json.dumps(BRANCH) in code[0].source


def test_launch_copies_are_byte_stable(student, tmp_path):
    again = launch.write_launch_notebooks(tmp_path)
    assert sorted(str(p) for p in again) == sorted(str(Path(p).with_suffix(".ipynb")) for p in PAGES)
    for rel in again:
        assert (tmp_path / rel).read_bytes() == (student / rel).read_bytes(), f"{rel}: regenerating differs"
    ids = [c["id"] for c in nbformat.read(str(tmp_path / again[0]), as_version=4).cells]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"cell-\d\d|launch-setup", i) for i in ids), ids


# --- the URLs ----------------------------------------------------------------------------------------------------


def target(url: str) -> str | None:
    """The path inside the student repository a launch or repository URL opens ('' for the repository itself);
    None for a link to anything else. Fails if it names another repository or branch."""
    parts = urlsplit(url)
    if parts.netloc == "colab.research.google.com":
        match = re.fullmatch(r"/github/([^/]+)/([^/]+)/blob/([^/]+)/(.+)", parts.path)
        assert match, url
        assert match.groups()[:3] == (ORG, REPO, BRANCH), url
        return match.group(4)
    if parts.netloc == "mybinder.org":
        match = re.fullmatch(r"/v2/gh/([^/]+)/([^/]+)/([^/]+)", parts.path)
        assert match and match.groups() == (ORG, REPO, BRANCH), url
        urlpath = parse_qs(parts.query)["urlpath"][0]
        assert urlpath.startswith("lab/tree/"), url
        return urlpath.removeprefix("lab/tree/")
    if parts.path.endswith("/hub/user-redirect/git-pull"):
        query = parse_qs(parts.query)
        assert query["repo"] == [URL] and query["branch"] == [BRANCH], url
        urlpath = query["urlpath"][0]
        assert urlpath.startswith(f"lab/tree/{REPO}/"), url  # nbgitpuller clones into a folder named after it
        return urlpath.removeprefix(f"lab/tree/{REPO}/")
    if parts.netloc == "github.com" and parts.path.strip("/").startswith(f"{ORG}/"):
        assert parts.path.strip("/") == f"{ORG}/{REPO}", url
        return ""
    return None


def theme_launch_urls(pagename: str, tmp_path: Path, jupyterhub_url: str = "") -> dict[str, str]:
    """Launch button text -> URL, as sphinx-book-theme builds them and the course's fix rewrites them."""
    from types import SimpleNamespace

    from sphinx_book_theme.header_buttons.launch import add_launch_buttons

    from attention_course import sphinx_fixes

    options = {
        "repository_url": URL,
        "repository_branch": BRANCH,
        "path_to_docs": "",
        "launch_buttons": {
            "notebook_interface": "jupyterlab",
            "binderhub_url": "https://mybinder.org",
            "colab_url": "https://colab.research.google.com",
            **({"jupyterhub_url": jupyterhub_url} if jupyterhub_url else {}),
        },
    }
    (tmp_path / "jupyter_execute" / pagename).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(), str((tmp_path / "jupyter_execute" / pagename).with_suffix(".ipynb")))
    app = SimpleNamespace(
        config={"html_theme_options": options},
        outdir=str(tmp_path / "html"),
        env=SimpleNamespace(
            doc2path=lambda name: str(ROOT / f"{name}.md"), metadata={pagename: {"kernelspec": {"name": "python3"}}}
        ),
    )
    context = {
        "header_buttons": [],
        "pagename": pagename,
        "sourcename": f"{pagename}.md",
        "github_url": "https://github.com",
        "github_user": ORG,
        "github_repo": REPO,
    }
    add_launch_buttons(app, pagename, "page.html", context, None)
    sphinx_fixes._launch_the_ipynb_copies(app, pagename, "page.html", context, None)
    group = next(g for g in context["header_buttons"] if g.get("label") == "launch-buttons")
    return {b["text"]: b["url"] for b in group["buttons"]}


def test_theme_urls_open_the_launch_copy(student, tmp_path):
    pagename = "book/modern-attention/kv-cache"
    urls = theme_launch_urls(pagename, tmp_path, jupyterhub_url="https://hub.example.edu")
    assert set(urls) == {"Binder", "JupyterHub", "Colab"}, urls
    assert urls["Colab"] == f"https://colab.research.google.com/github/{ORG}/{REPO}/blob/{BRANCH}/{pagename}.ipynb"
    assert urls["Binder"] == f"https://mybinder.org/v2/gh/{ORG}/{REPO}/{BRANCH}?urlpath=lab/tree/{pagename}.ipynb"
    assert urls["JupyterHub"].startswith("https://hub.example.edu/hub/user-redirect/git-pull?")
    for name, url in urls.items():
        assert target(url) == f"{pagename}.ipynb", (name, url)
        assert (student / target(url)).is_file(), (name, url)
    assert "JupyterHub" not in theme_launch_urls(pagename, tmp_path / "nohub")  # off unless a hub is set


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def site_links(page_html: Path) -> list[str]:
    parser = _Links()
    parser.feed(page_html.read_text())
    return parser.hrefs


def test_example_repository_hides_launch_and_repository_buttons():
    """With the example URL (no such repository) the theme's launch and repository buttons are dropped, downloads
    stay; with a real URL nothing is dropped."""
    from types import SimpleNamespace

    from attention_course import sphinx_fixes

    def buttons(url):
        context = {
            "header_buttons": [
                {"label": "download-buttons", "buttons": [{"label": "download-source-button"}]},
                {"label": "launch-buttons", "buttons": [{"label": "binder"}, {"label": "colab"}]},
                {"type": "group", "buttons": [{"label": "source-repository-button", "url": url}]},
                {"label": "fullscreen-button"},
            ]
        }
        app = SimpleNamespace(config=SimpleNamespace(html_theme_options={"repository_url": url}))
        sphinx_fixes._hide_buttons_of_the_example_repository(app, "book/intro", "page.html", context, None)
        return [g.get("label") or [b["label"] for b in g["buttons"]] for g in context["header_buttons"]]

    assert launch.is_example(launch.EXAMPLE_URL) and launch.is_example(launch.EXAMPLE_URL + ".git")
    assert buttons(launch.EXAMPLE_URL) == ["download-buttons", "fullscreen-button"]
    real = "https://github.com/a-university/attention-student"
    assert not launch.is_example(real)
    assert buttons(real) == ["download-buttons", "launch-buttons", ["source-repository-button"], "fullscreen-button"]


@pytest.mark.slow
def test_site_launch_links_resolve(student):
    """Every launch URL, repository link and .ipynb download in the built site resolves to a file; a site built
    with the example URL of `_config.yml` links to no repository and launches nothing (all would be dead)."""
    html = built_html()
    launched, downloads = {}, {}
    for page in toc_pages():
        page_html = html / f"{page}.html"
        assert page_html.is_file(), page_html
        for href in site_links(page_html):
            path = target(href)
            if launch.is_example(URL):
                dead = path is not None or "example-org" in href or urlsplit(href).netloc in LAUNCH_HOSTS
                assert not dead, f"{page}: {href} is a dead link (repository.url is the example)"
            if path is not None:
                assert path == "" or (student / path).is_file(), f"{page}: {href} opens {path}, not in the student repo"
                if path:
                    assert path == f"{page}.ipynb", f"{page}: {href} opens another page's file"
                    launched.setdefault(page, set()).add(urlsplit(href).netloc)
            elif "/_sources/" in f"/{href}":  # the download buttons: the page's source and its notebook
                downloaded = (page_html.parent / href).resolve()
                assert downloaded.is_file(), f"{page}: download {href} missing from the site"
                if href.endswith(".ipynb"):
                    downloads[page] = downloaded
    notebooks = [p.removesuffix(".md") for p in PAGES if p.removesuffix(".md") in toc_pages()]
    for page in notebooks:  # Colab and Binder on every notebook page (no hub is configured by default)
        if not launch.is_example(URL):
            assert launched.get(page) == set(LAUNCH_HOSTS), (page, launched.get(page))
        nb = nbformat.read(str(downloads[page]), as_version=4)  # the download is the page, executed
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert code == page_code_cells(ROOT / f"{page}.md"), f"{page}: the download's code differs from the page's"
    assert not set(launched) - set(notebooks), "launch buttons on a page that has no launch copy"


def test_binder_requirements_match_the_lock():
    """binder/requirements.txt pins what the site was built with (requirements.lock), and asks for d2l in postBuild."""
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            lock[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    pins = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith(("#", "-e")):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert {"torch", "torchvision", "numpy", "matplotlib", "scipy", "pandas", "ipykernel", "nbformat"} <= set(pins)
    assert {name: v for name, v in pins.items() if lock.get(name) != v} == {}, "binder pins differ from the lock"
    assert "requirements-d2l.txt" in (ROOT / "binder" / "postBuild").read_text()


# --- running the launch copies -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binder_env(student, tmp_path_factory):
    """A fresh venv made as Binder makes it: `pip install -r binder/requirements.txt` from the repository's root,
    then `binder/postBuild`. Returns (python, kernelspec folder, seconds the install took)."""
    base = tmp_path_factory.mktemp("binder-env")
    venv = base / "venv"
    start = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    env = {**clean_env(base / "home"), "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    for cmd in (
        [str(venv / "bin" / "pip"), "install", "--quiet", "-r", "binder/requirements.txt"],
        ["bash", "binder/postBuild"],
    ):
        proc = subprocess.run(cmd, cwd=student, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    seconds = time.monotonic() - start
    print(f"binder environment: {seconds:.0f} s")
    return venv / "bin" / "python", kernelspec(base / "kernels", venv / "bin" / "python"), seconds


COURSE_PACKAGES = ("attention_course", "attention-course", "__editable__.attention_course", "d2l")


def colab_env(binder_python: Path, base: Path) -> tuple[Path, Path]:
    """A venv like Colab's: every package of the Binder environment but the course package and d2l, without
    changing that environment (shared with the other tests): a new venv whose site-packages links to each of its
    entries but those. Returns (python, kernelspec folder)."""
    venv = base / "colab-venv"
    run([str(binder_python), "-m", "venv", "--without-pip", str(venv)], cwd=base)
    ask = "import site, sys; print(site.getsitepackages()[0])"
    shared = Path(run([str(binder_python), "-c", ask], cwd=base).stdout.strip())
    own = Path(run([str(venv / "bin" / "python"), "-c", ask], cwd=base).stdout.strip())
    for entry in shared.iterdir():
        if not entry.name.lower().replace("-", "_").startswith(tuple(p.replace("-", "_") for p in COURSE_PACKAGES)):
            (own / entry.name).symlink_to(entry)
    return venv / "bin" / "python", kernelspec(base / "colab-kernels", venv / "bin" / "python")


def kernelspec(folder: Path, python: Path) -> Path:
    """A kernelspec folder whose kernel "binder" runs `python`."""
    spec = folder / "binder"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "binder", "language": "python"}))
    return folder


def execute(nb, folder: Path, kernels: Path, home: Path, python: Path):
    home.mkdir(parents=True, exist_ok=True)
    km = KernelManager(kernel_name="binder", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(
        nb, km=km, timeout=600, allow_errors=False, kernel_name="binder", resources={"metadata": {"path": str(folder)}}
    )
    env = {**clean_env(home), "PATH": f"{python.parent}:/usr/bin:/bin", "MPLCONFIGDIR": str(home / "mpl")}
    client.execute(env=env)
    return nb


def outputs_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
def test_pages_run_in_the_binder_environment(student, binder_env, tmp_path):
    python, kernels, install_seconds = binder_env
    probe = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import attention_course, d2l, torch\nprint(attention_course.__file__)\nprint(d2l.__file__)"
            )
        ]
    )
    printed = outputs_text(execute(probe, student, kernels, tmp_path / "probe-home", python)).split()
    assert Path(printed[0]).resolve().is_relative_to(student.resolve()), printed  # the student repo's package
    assert Path(printed[1]).resolve().is_relative_to(python.parent.parent.resolve()), printed
    timings = {}
    for page in RUN_PAGES:
        path = student / Path(page).with_suffix(".ipynb")
        start = time.monotonic()
        try:
            execute(
                nbformat.read(str(path), as_version=4), path.parent, kernels, tmp_path / f"home-{path.stem}", python
            )
        except CellExecutionError as error:
            pytest.fail(f"{page} fails in the environment of binder/requirements.txt:\n{str(error)[-3000:]}")
        timings[page] = round(time.monotonic() - start)
    print(f"install {install_seconds:.0f} s; pages {timings}")


@pytest.mark.slow
def test_setup_cell_runs_a_launch_copy_without_the_course_installed(student, binder_env, tmp_path):
    """As on Colab: neither `attention_course` nor d2l installed, only the notebook opened. The set-up cell clones
    the student repository (here a local copy of it, under the URL's place) and installs d2l."""
    python, kernels = colab_env(binder_env[0], tmp_path)
    probe = "import importlib.util as u; print(u.find_spec('attention_course'), u.find_spec('d2l'))"
    missing = subprocess.run(  # in the kernel's environment (no PYTHONPATH: the checkout is not on it)
        [str(python), "-c", probe], cwd=tmp_path, env=clean_env(tmp_path / "probe"), capture_output=True, text=True
    )
    # as on Colab: neither is installed
    assert missing.stdout.split() == ["None", "None"], missing.stdout + missing.stderr
    origin = tmp_path / "origin"
    shutil.copytree(student, origin)
    for cmd in (
        ["git", "init", "--quiet", "--initial-branch", BRANCH],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "release"],
    ):
        run(cmd, cwd=origin)
    nb = nbformat.read(str(student / "book" / "modern-attention" / "kv-cache.ipynb"), as_version=4)
    setup = nb.cells[0]
    assert setup.get("id") == launch.SETUP_CELL_ID and json.dumps(URL) in setup.source
    setup.source = setup.source.replace(json.dumps(URL), json.dumps(origin.as_uri()))
    nb.cells.insert(
        1,
        nbformat.v4.new_code_cell(
            "import attention_course, d2l\nprint(attention_course.__file__)\nprint(d2l.__file__)"
        ),
    )
    content = tmp_path / "content"  # Colab's working folder: nothing of the course in it
    content.mkdir()
    try:
        execute(nb, content, kernels, tmp_path / "home", python)
    except CellExecutionError as error:
        pytest.fail(f"the launch copy fails without the course installed:\n{str(error)[-3000:]}")
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs).split()
    assert Path(printed[0]).resolve().is_relative_to((content / REPO).resolve()), printed
    assert (content / REPO / ".git").is_dir()
