"""The concept diagrams (`attention_course.diagrams`): SVG with text as text, one palette, shown with alt text.

Why no SVG is committed: each diagram is drawn by a hidden (`remove-input`) cell of the page that shows it, so
the build, which executes every page, writes it into the site. A diagram can never be older than its source, and
one that depicts a computation is drawn from the page's own tensors (the multi-head steps from the shapes d2l's
module computes on the page's X). The fast tests draw every diagram and check the SVG and the pages' cells; the
slow test checks the built site; `test_browser_site.py` checks them at 375 and 1280 pixels.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import torch
from helpers import ROOT
from sitebuild import diagram_cells, toc_pages

from attention_course import diagrams
from attention_course.plotting import MASK_COLOURS

SVG = "{http://www.w3.org/2000/svg}"
PAGES = [p for p in toc_pages() if (ROOT / f"{p}.md").is_file()]

DRAWINGS = {
    "soft_lookup": lambda: diagrams.soft_lookup(
        torch.tensor([0.9, 0.1]),
        torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]),
        torch.tensor([[10.0], [20.0], [30.0]]),
        torch.tensor([0.441, 0.198, 0.361]),
    ),
    "self_attention": diagrams.self_attention,
    "multi_head": lambda: diagrams.multi_head(
        {
            "projected": (2, 3, 6),
            "split": (2, 3, 3, 2),
            "heads": (6, 3, 2),
            "attended": (6, 3, 2),
            "concatenated": (2, 3, 6),
            "output": (2, 3, 6),
        }
    ),
    "masks": lambda: diagrams.masks(4, 5, n_src=5, valid_src=3),
    "blockwise_merge": lambda: diagrams.blockwise_merge(10, 37, block=16),
    "head_groups": lambda: diagrams.head_groups(8, groups_list=(8, 2, 1)),
    "transformer_block": diagrams.transformer_block,
}


DIAGRAM_PAGES = [p for p in PAGES if diagram_cells(p)]


def test_every_diagram_function_is_tested():
    public = {
        name
        for name, obj in vars(diagrams).items()
        if callable(obj) and getattr(obj, "__module__", "") == diagrams.__name__ and not name.startswith("_")
    }
    assert public - {"Drawing", "tint"} == set(DRAWINGS)


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def _text(element: ET.Element) -> str:
    return "".join(element.itertext())


@pytest.mark.parametrize("name", DRAWINGS)
def test_diagram_is_svg_with_text_as_text(name):
    svg = str(DRAWINGS[name]())
    root = _parse(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    assert root.get("viewBox") == f"0 0 {width:g} {height:g}"
    assert width <= diagrams.MAX_WIDTH, f"{name} is {width} px wide: illegible at 375 px"
    assert root.get("font-family") == diagrams.FONT_FAMILY, "one font for every diagram"
    texts = root.findall(f".//{SVG}text")
    assert texts and all(_text(t).strip() for t in texts), f"{name}: no text, or an empty <text>"
    assert all(float(t.get("font-size")) >= diagrams.MIN_FONT for t in texts)
    # glyphs drawn as outlines would be <path>s: the only path is the arrow head's
    assert len(root.findall(f".//{SVG}path")) == 1
    for element in root.iter():  # every shape inside the canvas
        if element.tag in (f"{SVG}rect", f"{SVG}text") and element.get("x") is not None:
            assert -1 <= float(element.get("x")) <= width + 1, f"{name}: {element.tag} outside: {element.attrib}"
            assert -1 <= float(element.get("y")) <= height + 1, f"{name}: {element.tag} outside: {element.attrib}"


def _is_palette_colour(colour: str) -> bool:
    if colour in ("none", "white", "100%", diagrams.INK) or colour in MASK_COLOURS:
        return True
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    for base in diagrams.COLOURS.values():
        b = [int(base[i : i + 2], 16) for i in (1, 3, 5)]
        ratios = {round((255 - c) / (255 - bc), 2) for c, bc in zip(rgb, b) if bc < 250}
        if len(ratios) == 1 or (ratios and max(ratios) - min(ratios) < 0.03):
            return True  # the base colour itself (ratio 1) or a tint of it
    return False


@pytest.mark.parametrize("name", DRAWINGS)
def test_diagram_uses_one_palette(name):
    svg = str(DRAWINGS[name]())
    colours = set(re.findall(r'(?:fill|stroke)="([^"]+)"', svg))
    assert all(_is_palette_colour(c) for c in colours), sorted(c for c in colours if not _is_palette_colour(c))


def test_queries_keys_values_have_one_colour_everywhere():
    """A box labelled Q/q is outlined in the query colour, K/k in the key colour, V/v in the value colour."""
    roles = {"q": "query", "k": "key", "v": "value"}
    for make in (DRAWINGS["soft_lookup"], DRAWINGS["self_attention"]):
        root = _parse(str(make()))
        children = list(root)
        for rect, text in zip(children, children[1:]):
            if rect.tag != f"{SVG}rect" or text.tag != f"{SVG}text":
                continue
            letter = _text(text).strip()[:1].lower()
            if letter in roles and _text(text).strip()[1:2] in ("", " ", "_") or re.match(r"[QKV] = X W", _text(text)):
                assert rect.get("stroke") == diagrams.COLOURS[roles[letter]], _text(text)


def test_palette_is_colour_blind_safe_okabe_ito():
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}
    assert {c for role, c in diagrams.COLOURS.items() if role != "neutral"} <= okabe_ito
    assert len(set(diagrams.COLOURS.values())) == len(diagrams.COLOURS)


def test_multi_head_draws_the_shapes_it_is_given():
    text = _text(_parse(str(DRAWINGS["multi_head"]())))
    for shape in ("(2, 3, 6)", "(2, 3, 3, 2)", "(6, 3, 2)"):
        assert shape in text


def test_too_wide_or_too_small_is_refused():
    with pytest.raises(ValueError):
        diagrams.Drawing(diagrams.MAX_WIDTH + 1, 100, "wide")
    with pytest.raises(ValueError):
        diagrams.Drawing(100, 100, "small").text(0, 0, "tiny", size=diagrams.MIN_FONT - 1)


def test_subscripts_are_tspans_and_code_names_are_not():
    d = diagrams.Drawing(200, 50, "sub")
    d.text(10, 20, "W_q and d_{out} and W_query")
    svg = str(d)
    assert '<tspan dy="4.5" font-size="11.25">q</tspan>' in svg
    assert ">out</tspan>" in svg and "W_query" in svg


def test_the_chapters_show_their_diagrams():
    wanted = {
        "book/attention-pooling/queries-keys-values": "soft_lookup",
        "book/self-attention/queries-keys-values": "self_attention",
        "book/multi-head/efficient-reshapes": "multi_head",
        "book/masking/cross-attention-masks": "masks",
        "book/efficient-attention/blockwise-attention": "blockwise_merge",
        "book/modern-attention/grouped-query-attention": "head_groups",
        "book/capstone/transformer-block": "transformer_block",
    }
    for page, function in wanted.items():
        assert any(f"diagrams.{function}(" in c.source for c in diagram_cells(page)), (page, function)


@pytest.mark.parametrize("page", DIAGRAM_PAGES)
def test_diagram_cells_have_alt_text_and_caption(page):
    for cell in diagram_cells(page):
        mystnb = cell.metadata.get("mystnb", {})
        alt = (mystnb.get("image") or {}).get("alt", "")
        figure = mystnb.get("figure") or {}
        assert len(alt) > 40, f"{page}: a diagram without an alt text that says what it shows"
        assert figure.get("caption") and figure.get("name"), f"{page}: a diagram without caption or name"
        assert "remove-input" in cell.metadata.get("tags", []), f"{page}: the drawing code is shown"


@pytest.mark.slow
@pytest.mark.parametrize("page", DIAGRAM_PAGES)
def test_built_page_shows_each_diagram_as_svg_with_alt(page):
    from sitebuild import built_html

    html_dir = built_html()
    html = (html_dir / f"{page}.html").read_text()
    for cell in diagram_cells(page):
        name = cell.metadata["mystnb"]["figure"]["name"]
        match = re.search(rf'<figure[^>]*id="{re.escape(name)}"[^>]*>(.*?)</figure>', html, re.S)
        assert match, f"{page}: figure {name} not in the built page"
        img = re.search(r'<img[^>]*src="([^"]+)"[^>]*>', match.group(1))
        assert img, f"{page}: figure {name} has no image"
        alt = re.search(r'alt="([^"]*)"', img.group(0))
        assert alt and len(alt.group(1)) > 40, f"{page}: {name} has no alt text"
        path = (html_dir / page).parent / img.group(1)
        assert path.suffix == ".svg" and path.is_file(), f"{page}: {name}: {path} is not an SVG file of the site"
        root = _parse(path.read_text())
        assert root.findall(f".//{SVG}text"), f"{page}: {name}: no <text> in {path.name}"
