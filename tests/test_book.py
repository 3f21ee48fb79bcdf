"""The book builds with warnings as errors, every page is executed without an error, and the site leaks nothing."""

from __future__ import annotations

import html as html_module
import re
import warnings

import nbformat
import pytest
import yaml
from helpers import ROOT
from sitebuild import build, built_html, toc_pages

from attention_course import assignments, leaks

pytestmark = [pytest.mark.slow]

PAGES = toc_pages()


@pytest.fixture(scope="module")
def html():
    return built_html()


def test_book_builds_with_warnings_as_errors():
    proc = build()
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    assert "build succeeded" in proc.stdout


@pytest.mark.parametrize("page", PAGES)
def test_every_toc_page_is_built_without_error_output(html, page):
    path = html / f"{page}.html"
    assert path.is_file(), f"{page} is in _toc.yml but {path} was not built"
    text = path.read_text()
    assert not re.search(r'class="[^"]*\b(traceback|ipythontb)\b', text), f"{page} shows an error output"
    for stderr in re.findall(r'<div class="output stderr[^"]*">(.*?)</div>\s*</div>', text, re.S):
        plain = html_module.unescape(re.sub(r"<[^>]+>", "", stderr))
        assert not re.search(r"\b\w*Error\b|Traceback", plain), f"{page} shows an error: {plain[:500]}"
        if re.search(r"\b\w*Warning\b", plain):
            warnings.warn(f"{page} shows a warning on stderr: {plain[:300]}", stacklevel=2)


def test_only_toc_pages_are_built(html):
    """solutions/, exercises/ and tests/ never become pages."""
    built = {
        str(p.relative_to(html).with_suffix(""))
        for p in html.rglob("*.html")
        if "_static" not in p.parts and "_sources" not in p.parts
    }
    assert built - set(PAGES) <= {"index", "genindex", "search"}, sorted(built - set(PAGES))


def test_site_holds_no_reference_answer_or_hidden_test(html):
    secrets = leaks.secrets(ROOT / "solutions")
    assert secrets, "nothing to look for: solutions/ is empty?"
    found = leaks.find_leaks(secrets, html.rglob("*"))
    assert not found, "\n".join(f"{p.relative_to(html)}: {s.kind} from {s.where}: {s.text!r}" for p, s in found[:10])


def test_math_is_served_locally(html):
    """MathJax comes from _static (sphinx-mathjax-offline), never from a CDN; no page loads a remote script."""
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in PAGES:
        text = (html / f"{page}.html").read_text()
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="((?:https?:)?//[^"]+)"', text)
        assert not remote, f"{page} loads {remote}"


def test_bibliography_lists_the_papers(html):
    text = re.sub(r"<[^>]+>", "", (html / "book" / "references.html").read_text())
    for author, year in [
        ("Bahdanau", "2014"),
        ("Vaswani", "2017"),
        ("Lin", "2017"),
        ("Cheng", "2016"),
        ("Parikh", "2016"),
        ("Paulus", "2017"),
    ]:
        assert re.search(rf"{author}.*?{year}", text, re.S), f"{author} {year} missing from the references"


def test_launch_and_repository_buttons_are_configured():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["html"]["use_repository_button"] is True
    launch = config["launch_buttons"]
    assert launch["notebook_interface"] == "jupyterlab"
    assert launch["binderhub_url"] and launch["colab_url"]
    assert "jupyterhub_url" not in launch, "no placeholder hub: the JupyterHub button is for instructors to add"
    assert "attention_course.sphinx_fixes" in config["sphinx"]["extra_extensions"]  # launch URLs name .ipynb
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]


def test_chapters_are_numbered(html):
    chapters = [p for p in PAGES if p.startswith("book/") and p.endswith("/index") and p != "book/assignments/index"]
    assert chapters
    for page in chapters:
        headings = re.findall(r"<h1>(.*?)</h1>", (html / f"{page}.html").read_text(), re.S)
        assert any(re.match(r'<span class="section-number">\d+\. </span>', h) for h in headings), (
            f"{page} has no chapter number"
        )


@pytest.mark.parametrize("assignment", sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir()))
def test_every_assignment_has_a_page_with_its_notebook(html, assignment):
    page = f"book/assignments/{assignment}"
    assert page in PAGES, f"exercises/{assignment} has no page {page}.md in _toc.yml (Exercises part)"
    text = (html / f"{page}.html").read_text()
    links = re.findall(r'<a class="reference download internal"[^>]*href="([^"]+)"', text)
    assert any(link.endswith(f"/{assignment}.ipynb") for link in links), f"{page} has no download of the notebook"
    for link in links:
        downloaded = (html / page).parent / link
        nb = nbformat.reads(downloaded.read_text(), as_version=4)
        nbformat.validate(nb)
        assert downloaded.read_bytes() == assignments.exercise_path(assignment).read_bytes()
    total = sum(p.points for p in assignments.parts(assignment))
    assert total > 0 and f"<strong>{total:g}</strong>" in text, "the page's points table lacks the total"
    for part in assignments.parts(assignment):
        for source in part.answers.values():
            for name in assignments.names(source):
                assert name in text, f"{page} does not show {name}"


def _sidebar(html, page: str) -> list[tuple[int, str]]:
    """The sidebar's entries on `page`: (level, text) in document order."""
    text = (html / f"{page}.html").read_text()
    nav = re.search(r'<nav class="[^"]*\bbd-docs-nav\b.*?</nav>', text, re.S)
    assert nav, f"{page} has no sidebar"
    entries = re.findall(r'<li class="toctree-l(\d)[^"]*">\s*<a [^>]*>(.*?)</a>', nav.group(0), re.S)
    return [(int(level), html_module.unescape(re.sub(r"<[^>]+>", "", label)).strip()) for level, label in entries]


def test_sidebar_numbers_each_chapter_s_pages_without_gaps(html):
    """Chapter N's pages read N.1, N.2, ... in the sidebar, as many as _toc.yml lists, on every page.

    Sphinx numbers the sections of a chapter's index page together with its pages: two `##` headings on an
    index page made its first page N.3.
    """
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbered = [c for part in toc["parts"] if part.get("numbered") for c in part["chapters"]]
    assert numbered
    for page in PAGES:
        entries = _sidebar(html, page)
        chapters = [label for level, label in entries if level == 1 and re.match(r"\d+\. ", label)]
        assert [c.split(". ")[0] for c in chapters] == [str(i) for i in range(1, len(numbered) + 1)], (page, chapters)
        for number, chapter in enumerate(numbered, start=1):
            start = next(
                i for i, (level, label) in enumerate(entries) if level == 1 and label.startswith(f"{number}. ")
            )
            sections = []
            for level, label in entries[start + 1 :]:
                if level == 1:
                    break
                if level == 2:
                    sections.append(label.split(" ")[0])
            expected = [f"{number}.{k}." for k in range(1, len(chapter.get("sections", [])) + 1)]
            assert sections == expected, f"{page}: chapter {number} ({chapter['file']}) numbered {sections}"
