"""The published site as a reader sees it, in Debian's Chromium driven by Playwright, with no network.

The built site (`_build/html`) is served on 127.0.0.1; every request to any other host is blocked and fails the
test. Every page of the table of contents: loads with no console error, every image loaded with a non-zero size
and has alt text or a caption, all math typeset by the local MathJax, no serious or critical axe-core violation,
no line of a reference answer or hidden test in its text; a full-page screenshot of each is saved under
`_build/screenshots/` for review. Search finds "softmax"; the exercise downloads are the student notebooks.

Needs `/usr/bin/chromium` (`make system-deps`) and axe-core (`make browser-deps`); never `playwright install`.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from urllib.parse import urlsplit

import chromium
import nbformat
import pytest
from helpers import ROOT
from sitebuild import built_html, diagram_cells, toc_pages

from attention_course import assignments, diagrams, leaks

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AXE = ROOT / "_build" / "node" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "_build" / "screenshots"
PAGES = toc_pages()
DIAGRAM_PAGES = [p for p in PAGES if (ROOT / f"{p}.md").is_file() and diagram_cells(p)]
TIMEOUT_MS = 30_000


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """The built site served on loopback: yields its base URL."""
    html = built_html()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium.launch(p)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def secrets():
    return leaks.secrets(ROOT / "solutions")


class Visit:
    """One page in a fresh browser context, recording console errors and every request to another host."""

    def __init__(self, browser, base: str):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        self.context.set_default_timeout(TIMEOUT_MS)
        self.outside: list[str] = []
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(f"{m.text} @ {m.location}"))
        self.page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url}: HTTP {r.status}"))

    def _route(self, route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or url.startswith(self.base + "/") or url == self.base:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort("blockedbyclient")

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, site):
    v = Visit(browser, site)
    yield v
    v.close()


IMAGES_JS = """() => Array.from(document.images).map(img => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    alt: (img.getAttribute('alt') || '').trim(),
    caption: (img.closest('figure')?.querySelector('figcaption')?.innerText || '').trim(),
    visible: !!(img.offsetWidth || img.offsetHeight || img.getClientRects().length)}))"""

MATH_JS = """async () => {
    const nodes = Array.from(document.querySelectorAll('.math'));
    if (!nodes.length) return {count: 0};
    for (let i = 0; i < 300 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
        await new Promise(r => setTimeout(r, 100));
    if (!(window.MathJax && MathJax.startup)) return {count: nodes.length, loaded: false};
    await MathJax.startup.promise;
    return {count: nodes.length, loaded: true,
            untypeset: nodes.filter(n => !n.querySelector('mjx-container')).map(n => n.textContent.slice(0, 80)),
            errors: Array.from(document.querySelectorAll('mjx-merror, [data-mjx-error]')).map(
                n => n.getAttribute('data-mjx-error') || n.textContent.slice(0, 80))};
}"""

AXE_JS = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || '').slice(0, 200))}));
}"""


def _screenshot_name(page: str) -> str:
    return page.replace("/", "__") + ".png"


@pytest.mark.parametrize("page", PAGES)
def test_page_reads_offline(visit, secrets, page, tmp_path):
    assert AXE.is_file(), f"{AXE} is missing: run `make browser-deps` (npm install axe-core)"
    tab = visit.page
    response = tab.goto(f"{visit.base}/{page}.html", wait_until="load")
    assert response and response.ok, f"{page}: HTTP {response and response.status}"

    # Math: every .math element typeset by the local MathJax, without TeX errors.
    math = tab.evaluate(MATH_JS)
    if math["count"]:
        assert math["loaded"], f"{page}: MathJax did not load"
        assert not math["untypeset"], f"{page}: math not rendered: {math['untypeset'][:5]}"
        assert not math["errors"], f"{page}: MathJax errors: {math['errors'][:5]}"

    # Images: all loaded with a size, each with alt text or a figure caption.
    for img in tab.evaluate(IMAGES_JS):
        if not img["visible"]:
            continue
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, f"{page}: image not loaded: {img}"
        assert img["alt"] or img["caption"], f"{page}: image without alt text or caption: {img['src']}"

    # Nothing of solutions/ in what a reader can read.
    text_file = tmp_path / "page.txt"
    text_file.write_text(tab.inner_text("body"))
    found = leaks.find_leaks(secrets, [text_file])
    assert not found, f"{page}: " + "; ".join(f"{s.kind} from {s.where}: {s.text!r}" for _, s in found[:5])

    # Accessibility: axe-core, no serious or critical violation.
    tab.add_script_tag(path=str(AXE))
    violations = [v for v in tab.evaluate(AXE_JS) if v["impact"] in ("serious", "critical")]
    assert not violations, f"{page}: accessibility violations:\n" + "\n".join(
        f"  {v['impact']} {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in violations
    )

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / _screenshot_name(page)), full_page=True)

    assert not visit.outside, f"{page}: requests left the machine: {sorted(set(visit.outside))[:10]}"
    assert not visit.failed, f"{page}: failed requests: {visit.failed[:10]}"
    assert not visit.console_errors, f"{page}: console errors: {visit.console_errors[:10]}"


def test_search_finds_softmax(visit):
    """As a reader searches: open the search box from the landing page, type, press Enter, get result links."""
    tab = visit.page
    tab.goto(f"{visit.base}/{PAGES[0]}.html", wait_until="load")
    tab.keyboard.press("Control+k")
    box = tab.locator("input[name='q']:visible").first
    box.fill("softmax")
    box.press("Enter")
    tab.wait_for_url(re.compile(r"search\.html\?q=softmax"))
    results = tab.locator("#search-results ul.search li a")
    results.first.wait_for(state="visible", timeout=TIMEOUT_MS)
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("attention-pooling" in (h or "") for h in hrefs), f"search for softmax found only {hrefs}"
    assert not visit.outside and not visit.console_errors, (visit.outside, visit.console_errors)


def test_launch_and_repository_buttons(visit):
    """A chapter page offers Binder (JupyterLab) and Colab on its launch copy `<page>.ipynb`, and links the student
    repository; a JupyterHub button only when `_config.yml` names a hub (tests/test_launch_buttons.py checks
    that every such URL opens a file of the student repository). While `_config.yml` holds the example URL, none
    of them is there (they would be dead links)."""
    import yaml

    from attention_course import launch

    page = next(p for p in PAGES if p.startswith("book/") and not p.endswith("/index") and "/" in p[5:])
    tab = visit.page
    tab.goto(f"{visit.base}/{page}.html", wait_until="load")
    hrefs = tab.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    if launch.is_example(launch.repository()[0]):
        dead = [h for h in hrefs if urlsplit(h).netloc in ("github.com", "mybinder.org", "colab.research.google.com")]
        assert not dead, f"dead links of the example repository: {dead}"
        return
    assert any(urlsplit(h).netloc == "github.com" for h in hrefs), "no repository button"
    hub = (yaml.safe_load((ROOT / "_config.yml").read_text())["launch_buttons"] or {}).get("jupyterhub_url")
    hub_links = [h for h in hrefs if "/hub/user-redirect/" in h]
    assert bool(hub_links) == bool(hub), f"JupyterHub button {hub_links} with jupyterhub_url {hub!r}"
    assert any("mybinder.org" in h and f"urlpath=lab/tree/{page}.ipynb" in h for h in hrefs), "no Binder button"
    assert any("colab.research.google.com" in h and h.endswith(f"/{page}.ipynb") for h in hrefs), "no Colab button"


@pytest.mark.parametrize("assignment", sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir()))
def test_exercise_download_is_the_student_notebook(visit, secrets, assignment, tmp_path):
    tab = visit.page
    tab.goto(f"{visit.base}/book/assignments/{assignment}.html", wait_until="load")
    link = tab.locator(f"a.download[href$='/{assignment}.ipynb']").first
    with tab.expect_download() as info:
        link.click()
    path = tmp_path / f"{assignment}.ipynb"
    info.value.save_as(path)
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert path.read_bytes() == assignments.exercise_path(assignment).read_bytes()
    text = path.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    assert not leaks.find_leaks(secrets, [path])
    assert "raise NotImplementedError" in text


CODE_JS = """() => {
    const blocks = Array.from(document.querySelectorAll('div.cell_input pre, div.highlight-bash pre, '
        + 'div.highlight-python pre, div.highlight-ipython3 pre')).filter(b => !b.closest('.cell_output'));
    const wide = blocks.filter(b => b.scrollWidth > b.clientWidth + 1).map(b => {
        const line = b.innerText.split('\\n').reduce((a, l) => l.length > a.length ? l : a, '');
        return line.length + ' chars: ' + line;
    });
    return {count: blocks.length, wide};
}"""

CAPACITY_JS = """() => {
    const pre = document.querySelector('div.cell_input pre');
    const probe = document.createElement('span');
    probe.textContent = 'x'.repeat(200);
    pre.appendChild(probe);
    const style = getComputedStyle(pre);
    const inner = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const perChar = probe.getBoundingClientRect().width / 200;
    probe.remove();
    return inner / perChar;
}"""


def test_code_blocks_show_page_code_width_characters(visit):
    """The width limit of tests/test_page_code_width.py is what a code block shows in a 1280-pixel window."""
    from test_page_code_width import WIDTH

    tab = visit.page
    tab.goto(f"{visit.base}/book/attention-pooling/softmax.html", wait_until="load")
    fits = tab.evaluate(CAPACITY_JS)
    print(f"a code block at 1280 px shows {fits:.1f} characters")
    assert WIDTH <= fits < WIDTH + 2, f"{fits:.1f} characters fit; the source test allows {WIDTH}"


@pytest.mark.parametrize("page", PAGES)
def test_code_lines_are_not_cut_off(visit, page):
    """No code block of any page (code cells, shell blocks, included sources; not outputs) scrolls sideways."""
    tab = visit.page
    tab.goto(f"{visit.base}/{page}.html", wait_until="load")
    found = tab.evaluate(CODE_JS)
    assert not found["wide"], f"{page}: {len(found['wide'])} of {found['count']} blocks cut off: {found['wide'][:5]}"


DIAGRAMS_JS = """() => Array.from(document.querySelectorAll('figure svg[data-diagram]')).map(svg => {
    const r = svg.getBoundingClientRect();
    const texts = Array.from(svg.querySelectorAll('text'));
    // select the diagram's text as a reader would (drag over it): the selection holds the SVG's own text
    const selection = window.getSelection();
    selection.removeAllRanges();
    const range = document.createRange();
    range.selectNodeContents(svg);
    selection.addRange(range);
    const selected = selection.toString();
    selection.removeAllRanges();
    const sizes = texts.concat(Array.from(svg.querySelectorAll('tspan[font-size]')))
        .map(t => parseFloat(getComputedStyle(t).fontSize));
    return {id: svg.closest('figure').id, role: svg.getAttribute('role') || '',
            alt: svg.getAttribute('aria-label') || '', title: svg.querySelector('title')?.textContent || '',
            selectable: getComputedStyle(svg).userSelect !== 'none'
                && texts.every(t => getComputedStyle(t).userSelect !== 'none'),
            texts: texts.map(t => t.textContent), selected: selected,
            left: r.left, right: r.right, shown: r.width, height: r.height, natural: svg.viewBox.baseVal.width,
            naturalHeight: svg.viewBox.baseVal.height, smallestFont: Math.min(...sizes),
            figureRight: svg.closest('figure').getBoundingClientRect().right,
            viewport: document.documentElement.clientWidth,
            pageWidth: document.documentElement.scrollWidth};
})"""


@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("page", DIAGRAM_PAGES)
def test_diagrams_fit_the_window_and_stay_legible(browser, site, page, width):
    """Each concept diagram is an inline SVG (no `<img>`) whose text is text in the page's DOM, selectable; it has
    its alt text as `role="img"` + `aria-label` + `<title>`; it and its figure lie inside the window, it keeps its
    proportions, and its smallest text, scaled as shown, is at least 8 px high on a 375-pixel
    phone and shown at full size (14 px) at 1280 pixels. The page itself never scrolls sideways."""
    names = [c.metadata["mystnb"]["figure"]["name"] for c in diagram_cells(page)]
    context = browser.new_context(viewport={"width": width, "height": 900}, service_workers="block")
    try:
        tab = context.new_page()
        tab.goto(f"{site}/{page}.html", wait_until="load")
        shown = {f["id"]: f for f in tab.evaluate(DIAGRAMS_JS)}
        for name in names:
            figure = shown.get(name)
            assert figure, f"{page}: diagram {name} not shown inline"
            assert figure["role"] == "img" and len(figure["alt"]) > 40 and figure["title"] == figure["alt"], figure
            assert figure["selectable"], f"{page}: {name}: its text cannot be selected"
            selected = " ".join(figure["selected"].split())  # a selection collapses runs of white space
            words = [" ".join(t.split()) for t in figure["texts"] if t.strip()]
            assert words and all(t in selected for t in words), f"{page}: {name}: text not selected"
            assert figure["left"] >= 0 and figure["right"] <= figure["viewport"] + 0.5, f"{page}: {name} overflows"
            assert figure["figureRight"] <= figure["viewport"] + 0.5, f"{page}: {name}'s figure overflows"
            assert figure["pageWidth"] <= figure["viewport"], f"{page} is wider than the window (sideways scrolling)"
            ratio = figure["height"] / figure["shown"]
            assert abs(ratio - figure["naturalHeight"] / figure["natural"]) < 0.01, f"{page}: {name} is distorted"
            smallest = figure["smallestFont"] * figure["shown"] / figure["natural"]
            print(f"{page} {name} at {width} px: shown {figure['shown']:.0f} px wide, smallest text {smallest:.1f} px")
            assert smallest >= (8 if width < 500 else diagrams.MIN_FONT - 0.01), f"{page}: {name}: {smallest:.1f} px"
    finally:
        context.close()
