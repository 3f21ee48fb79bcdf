"""A Sphinx extension with fixes the published site needs (listed in `_config.yml`, `sphinx.extra_extensions`).

- sphinx-thebe registers its inline configuration script with `filename=None`; Sphinx 7.4 re-adds it as
  `filename=''` and no longer sees the two as equal, so every page declared `const THEBE_JS_URL` twice and the
  browser logged "Identifier 'THEBE_JS_URL' has already been declared". Duplicate scripts are dropped per page.
- docutils marks bibliography entries `role="doc-biblioentry"` inside a `role="list"`; that DPUB role is
  deprecated and axe-core reports the list as holding no list items (critical: aria-required-children). The
  entries become `role="listitem"`.
- Pages that read the exercises at build time (`attention_course.assignments`, the Exercises part) depend on
  `exercises/*/*.ipynb` and on that module: Sphinx is told so, and re-reads (and re-executes) them when either
  changes, instead of serving a stale points table from an incremental build.
- sphinx-book-theme's Colab, Binder and JupyterHub buttons link to the page's source, `<page>.md`, which Colab
  cannot open (and which Binder and a JupyterHub open only through jupytext). They are pointed at the page's launch
  copy `<page>.ipynb`, which `make student-repo` writes next to it in the student repository
  (`attention_course.launch`); the theme has no option for that (it uses an `.ipynb` only when one lies beside the
  source). A launch URL that does not name the page's source fails the build rather than publishing a dead link.
- While `_config.yml`'s `repository.url` is still the example it ships (`launch.EXAMPLE_URL`, a repository that
  does not exist), every Binder, Colab, JupyterHub and repository button would be a dead link: the site is built
  without them, and the build says (in red, not as a warning, since `-W` would fail the build) which setting to
  change to get them.
- Sphinx reads (and myst-nb executes) the pages in alphabetical order of their names; a page that uses what an
  earlier page of the book made (the capstone's maps load the model its training page trains) would run before
  it. Pages are read in the order of the table of contents instead, the order a reader follows.
- A concept diagram (`attention_course.diagrams`) reaches a page as an output holding both an inline `<svg>`
  (text/html, which myst-nb prefers for HTML) and an SVG picture (image/svg+xml, which myst-nb writes to a file shown
  with `<img>`, where text cannot be selected). The inline one is kept; myst-nb gives the cell's alt text
  (`mystnb: image: alt`) only to the picture, so it is copied onto the `<svg>` (`role="img"`, `aria-label`,
  `<title>`). An inline diagram without an alt text is a build warning (an error under `-W`).
- This module's code is a config value of the HTML builder, so changing a fix rewrites every page.

Fixes of the theme's own widgets, which are made in the browser, are in `_static/accessibility.js`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sphinx.errors import ExtensionError


def _key(asset) -> tuple:
    attributes = getattr(asset, "attributes", {}) or {}
    filename = getattr(asset, "filename", asset) or ""
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items() if k != "priority")))


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for asset in scripts:
        key = _key(asset)
        if key not in seen:
            seen.add(key)
            unique.append(asset)
    scripts[:] = unique


def _fix_biblio_roles(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if body and 'role="doc-biblioentry"' in body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


def _note_exercise_dependencies(app, docname, source):
    if "attention_course.assignments" not in source[0]:
        return
    from attention_course import assignments

    root = Path(app.srcdir)
    for path in [Path(assignments.__file__), *sorted((root / "exercises").glob("*/*.ipynb"))]:
        app.env.note_dependency(str(path.resolve()))  # for the document being read (env.docname)


def _launch_the_ipynb_copies(app, pagename, templatename, context, doctree):
    from attention_course import launch

    groups = [g for g in context.get("header_buttons") or [] if g.get("label") == "launch-buttons"]
    if not groups:
        return
    source = Path(app.env.doc2path(pagename))
    if source.suffix == ".ipynb":
        return
    if not launch.is_notebook_page(source):
        raise ExtensionError(f"{pagename}: launch buttons on a page that gets no launch copy ({source})")
    md, ipynb = f"{pagename}{source.suffix}", f"{pagename}.ipynb"
    for group in groups:
        for button in group.get("buttons", []):
            url = button.get("url")
            if url is None or ipynb in url:  # Thebe's button has no URL; an .ipynb beside the source: already used
                continue
            if url.count(md) != 1:
                raise ExtensionError(f"{pagename}: launch URL does not name the page's source {md} once: {url}")
            button["url"] = url.replace(md, ipynb)


HIDDEN_WITH_THE_EXAMPLE_URL = ("launch-buttons", "source-repository-button", "source-file-button", "source-edit-button")


def _repository_url(app) -> str:
    return (getattr(app.config, "html_theme_options", None) or {}).get("repository_url", "") or ""


def _say_the_example_url_hides_buttons(app):
    from sphinx.util import logging
    from sphinx.util.console import bold, red

    from attention_course import launch

    if launch.is_example(_repository_url(app)):
        logging.getLogger(__name__).info(
            bold(
                red(
                    f"_config.yml: repository.url is still the example {launch.EXAMPLE_URL}: the site is built "
                    "without its Binder, Colab and repository buttons. Set it to the student repository "
                    "(`make student-repo`) to get them."
                )
            )
        )


def _hide_buttons_of_the_example_repository(app, pagename, templatename, context, doctree):
    from attention_course import launch

    if not launch.is_example(_repository_url(app)):
        return
    groups = context.get("header_buttons") or []
    for group in groups:  # the repository button lives in a dropdown group with the other source buttons
        if "buttons" in group:
            group["buttons"][:] = [b for b in group["buttons"] if b.get("label") not in HIDDEN_WITH_THE_EXAMPLE_URL]
    groups[:] = [
        g for g in groups if g.get("label") not in HIDDEN_WITH_THE_EXAMPLE_URL and ("buttons" not in g or g["buttons"])
    ]


def toc_order(toc_path: Path) -> list[str]:
    """The documents of a Jupyter Book `_toc.yml`, root first, in the order a reader meets them."""
    import yaml

    toc = yaml.safe_load(Path(toc_path).read_text())
    order = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                order.append(
                    str(Path(entry["file"]).with_suffix("")) if "." in Path(entry["file"]).name else entry["file"]
                )
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return order


def _read_in_toc_order(app, env, docnames):
    toc = getattr(app.config, "external_toc_path", None) or "_toc.yml"
    path = Path(app.confdir, toc) if not Path(toc).is_absolute() else Path(toc)
    if not path.is_file():
        return
    rank = {doc: i for i, doc in enumerate(toc_order(path))}
    docnames.sort(key=lambda doc: (rank.get(doc, len(rank)), doc))  # in place, as the event asks


def _inline_diagrams(app, doctree):
    from docutils import nodes
    from sphinx.util import logging

    from attention_course.diagrams import labelled

    def is_bundle(node) -> bool:
        return isinstance(node, nodes.container) and node.get("nb_element") == "mime_bundle"

    for bundle in list(doctree.findall(is_bundle)):
        by_type = {child.get("mime_type"): child for child in bundle.children}
        if "text/html" not in by_type or "image/svg+xml" not in by_type:
            continue
        raw = next(iter(by_type["text/html"].findall(nodes.raw)), None)
        if raw is None or not raw.astext().startswith("<svg") or "data-diagram=" not in raw.astext():
            continue
        image = next(iter(by_type["image/svg+xml"].findall(nodes.image)), None)
        alt = (image.get("alt") if image is not None else "") or ""
        if not alt.strip():
            logging.getLogger(__name__).warning(
                "a concept diagram without an alt text (mystnb: image: alt)", location=bundle
            )
            continue
        raw.replace_self(nodes.raw(text=labelled(raw.astext(), alt), format="html", classes=raw["classes"]))


def setup(app):
    app.add_config_value("attention_course_fixes", hashlib.sha256(Path(__file__).read_bytes()).hexdigest(), "html")
    app.connect("env-before-read-docs", _read_in_toc_order)
    app.connect("doctree-read", _inline_diagrams)
    app.connect("source-read", _note_exercise_dependencies)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("html-page-context", _fix_biblio_roles, priority=900)
    app.connect("html-page-context", _launch_the_ipynb_copies, priority=600)  # after the theme's (501)
    app.connect("html-page-context", _hide_buttons_of_the_example_repository, priority=700)
    app.connect("builder-inited", _say_the_example_url_hides_buttons)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
