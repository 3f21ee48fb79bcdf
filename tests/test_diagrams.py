"""The concept diagrams (`attention_course.diagrams`): SVG with text as text, one palette, shown with alt text.

Why no SVG is committed: each diagram is drawn by a hidden (`remove-input`) cell of the page that shows it, so
the build, which executes every page, writes it into the site. A diagram can never be older than its source, and
one that depicts a computation is drawn from the page's own tensors (the multi-head steps from the shapes d2l's
module computes on the page's X). The fast tests draw every diagram and check the SVG and the pages' cells; the
slow test checks that the built site holds them as inline SVG with their alt texts (no `<img>`: text stays text);
`test_browser_site.py` checks them in chromium at 375 and 1280 pixels (selectable text, no overflow).
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
    "scoring": lambda: diagrams.scoring(20, 2, 8),
    "positional_waves": lambda: diagrams.positional_waves(_sinusoids(60, 32), pairs=(0, 2, 4, 8), position=5),
    "causal_tiles": lambda: diagrams.causal_tiles(_tile_kinds(16, 4), block=4),
    "rope_pairs": lambda: diagrams.rope_pairs(_rotated(8)),
    "kv_cache": lambda: diagrams.kv_cache(torch.arange(40, 65), 5, steps=3, cache_shape=(2, 2, 24, 16)),
    "window_reach": lambda: diagrams.window_reach(_reaches(16, 3, 4), window=3),
    "weight_rows": lambda: diagrams.weight_rows(
        ["the", "cat", "<pad>", "<pad>"],
        [
            ("scores", torch.tensor([0.5, 0.77, 0.09, 0.13]), "score", None),
            ("masked", torch.tensor([0.5, 0.77, -1e6, -1e6]), "score", "keys j ≥ 2 ← −10^6"),
            ("weights", torch.tensor([0.4337, 0.5663, 0.0, 0.0]), "weight", "softmax"),
            ("kept", torch.tensor([True, False, True, True]), "mask", "dropout"),
        ],
    ),
    "kernel_pooling": lambda: diagrams.kernel_pooling(*_kernel_example(), sigma=0.5),
    "heads_concat": lambda: diagrams.heads_concat(
        [torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0]), torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0])], 4, 6, 3
    ),
    "reversal": lambda: diagrams.reversal(
        torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]), torch.tensor([6, 2, 9, 5, 1, 4, 1, 3])
    ),
}


def _kernel_example():
    keys = torch.tensor([0.5, 1.0, 2.0, 2.4, 3.0, 4.5])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    weights = torch.softmax(-((2.5 - keys) ** 2) / (2 * 0.5**2), dim=0)
    return keys, values, 2.5, weights


def _sinusoids(n, d):
    """The sinusoidal encoding, (n, d), from its formula."""
    angle = torch.arange(n)[:, None] / 10000 ** (torch.arange(0, d, 2) / d)
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(n, d)


def _tile_kinds(n, b):
    """0: skipped, 1: masked in a diagonal tile, 2: computed (the efficient-attention page's `kind`)."""
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    return torch.where(j // b > i // b, 0, torch.where((j // b < i // b) | (j <= i), 2, 1))


def _rotated(positions):
    """(1, 0, 1, 0) rotated by RoPE to positions 0, 1, ...: pair j turns by 100^-j rad per position."""
    angles = torch.arange(positions)[:, None] * torch.tensor([1.0, 0.01])
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).reshape(positions, 4)


def _reaches(n, window, depth):
    back = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    return [(back >= 0) & (back <= L * (window - 1)) for L in range(1, depth + 1)]


DIAGRAM_PAGES = [p for p in PAGES if diagram_cells(p)]


def test_every_diagram_function_is_tested():
    public = {
        name
        for name, obj in vars(diagrams).items()
        if callable(obj) and getattr(obj, "__module__", "") == diagrams.__name__ and not name.startswith("_")
    }
    assert public - {"Drawing", "tint", "labelled"} == set(DRAWINGS)


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
    sized = texts + root.findall(f".//{SVG}tspan[@font-size]")
    assert all(float(t.get("font-size")) >= diagrams.MIN_FONT for t in sized), f"{name}: text under 14 px"
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


def _texts(name) -> list[str]:
    return [_text(t) for t in _parse(str(DRAWINGS[name]())).iter(f"{SVG}text")]


def test_scoring_draws_the_sizes_it_is_given():
    text = " | ".join(_texts("scoring"))
    assert "1 × 20" in text and "1 × 2 |" in text and text.count("1 × 8") == 2
    assert "8·(20 + 2 + 1) = 184" in text
    other = " | ".join(_text(t) for t in _parse(str(diagrams.scoring(7, 3, 5))).iter(f"{SVG}text"))
    assert "1 × 7" in other and "5·(7 + 3 + 1) = 55" in other


def test_positional_waves_plot_the_table_they_are_given():
    table = _sinusoids(60, 32)
    root = _parse(str(DRAWINGS["positional_waves"]()))
    curves = [c for c in root.iter(f"{SVG}polyline") if not c.get("marker-end")]
    assert len(curves) == 2 * 4  # a sine and a cosine per pair
    for curve, column in zip(curves, (0, 1, 4, 5, 8, 9, 16, 17)):
        ys = [float(p.split(",")[1]) for p in curve.get("points").split()]
        assert len(ys) == 60
        # the curve is the column, shifted and scaled (y down): its values, read back, are the table's
        middle = ys[0] + 28 * float(table[0, column])
        assert torch.allclose(torch.tensor([(middle - y) / 28 for y in ys]), table[:, column], atol=0.01)
    text = " | ".join(_texts("positional_waves"))
    assert "ω = 0.316" in text and "ω = 0.01" in text and "position 5" in text
    assert f"p = ({float(table[5, 0]):.2f}, {float(table[5, 1]):.2f})" in text


def test_causal_tiles_draw_the_kinds_and_count_the_tiles():
    kind = _tile_kinds(16, 4)
    root = _parse(str(DRAWINGS["causal_tiles"]()))
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect") if r.get("stroke") == "white"]
    colours = {0: "white", 1: diagrams.MASK_OFF, 2: diagrams.MASK_ON}
    assert fills == [colours[int(v)] for v in kind.flatten()]
    assert _texts("causal_tiles").count("skip") == 6
    text = " | ".join(_texts("causal_tiles"))
    assert "6 full tiles" in text and "in 4 diagonal tiles" in text and "6 tiles" in text
    text = " | ".join(_text(t) for t in _parse(str(diagrams.causal_tiles(_tile_kinds(12, 4), 4))).iter(f"{SVG}text"))
    assert "3 full tiles" in text and "3 diagonal" in text and "12 × 12" in text


def test_rope_pairs_point_where_the_rotated_vectors_point():
    import math

    root = _parse(str(DRAWINGS["rope_pairs"]()))
    arrows = [a for a in root.iter(f"{SVG}polyline") if a.get("marker-end")]
    assert len(arrows) == 2 * 4  # one arrow per pair and position
    turned = _rotated(8)
    for k, arrow in enumerate(arrows):
        (x1, y1), (x2, y2) = ([float(v) for v in p.split(",")] for p in arrow.get("points").split())
        j, p = divmod(k, 4)
        assert math.isclose(
            math.atan2(y1 - y2, x2 - x1), math.atan2(turned[p, 2 * j + 1], turned[p, 2 * j]), abs_tol=1e-3
        )
    text = " | ".join(_texts("rope_pairs"))
    assert "turns 1.00 rad per position" in text and "turns 0.01 rad per position" in text


def test_kv_cache_shows_the_tokens_and_the_growing_cache():
    text = _texts("kv_cache")
    assert text.count("40") == 4 and text.count("47") == 1  # position 0 in every row, position 7 only at step 3
    assert "5 queries, 5 keys" in text and "1 query, 8 keys" in text
    assert "cache (2,2,5,16)" in text and "cache (2,2,8,16)" in text
    root = _parse(str(DRAWINGS["kv_cache"]()))
    strokes = [r.get("stroke") for r in root.iter(f"{SVG}rect") if r.get("stroke") in diagrams.COLOURS.values()]
    # computed: the 5 prompt tokens, then one per step (and the legend's box); the rest comes from the cache
    assert strokes.count(diagrams.COLOURS["residual"]) == 5 + 3 + 1
    assert strokes.count(diagrams.COLOURS["key"]) == 5 + 6 + 7 + 1


def test_window_reach_highlights_the_measured_dependencies():
    reaches = _reaches(16, 3, 4)
    reaches[3][15, 5] = True  # a measured dependence outside the band is drawn, not the formula's
    root = _parse(str(diagrams.window_reach(reaches, window=3)))
    circles = list(root.iter(f"{SVG}circle"))
    assert len(circles) == 16 * 5
    inputs = circles[:16]  # the rows are drawn from the inputs up
    on = [c.get("fill") != "white" for c in inputs]
    assert on == [bool(v) for v in reaches[3][15]]
    text = " | ".join(_text(t) for t in root.iter(f"{SVG}text"))
    assert "10 steps back; L(w − 1) = 8" in text


def test_weight_rows_show_the_numbers_and_masks_given():
    texts = _texts("weight_rows")
    assert texts[:4] == ["the", "cat", "<pad>", "<pad>"]
    assert ["0.50", "0.77", "0.09", "0.13"] == texts[texts.index("scores") + 1 : texts.index("scores") + 5]
    assert texts.count("−106") == 2  # −10 with a superscript 6: the fill value, not a number with two decimals
    assert "0.43" in texts and "0.57" in texts and "Σ 1.00" in texts
    root = _parse(str(DRAWINGS["weight_rows"]()))
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect") if r.get("fill") in diagrams.MASK_COLOURS]
    # the masked scores are grey, then the keep mask: kept, dropped, kept, kept
    assert fills[-4:] == [diagrams.MASK_ON, diagrams.MASK_OFF, diagrams.MASK_ON, diagrams.MASK_ON]
    bars = [float(r.get("height")) for r in root.iter(f"{SVG}rect") if r.get("stroke") == "none"]
    assert bars[0] / bars[1] == pytest.approx(0.4337 / 0.5663, rel=1e-3)  # bar heights ∝ the weights


def test_kernel_pooling_stems_are_the_weights_and_the_prediction_their_average():
    keys, values, query, weights = _kernel_example()
    root = _parse(str(DRAWINGS["kernel_pooling"]()))
    stems = [
        float(line.get("y1")) - float(line.get("y2"))
        for line in root.iter(f"{SVG}line")
        if line.get("stroke-width") == "2.5"
    ]
    assert torch.allclose(torch.tensor(stems) / max(stems), weights / weights.max(), atol=1e-3)
    text = " | ".join(_texts("kernel_pooling"))
    assert f"= {float(weights @ values):.2f}" in text and "query x = 2.50" in text and "σ = 0.5" in text


def test_heads_concat_draws_each_heads_weights_and_the_sizes():
    root = _parse(str(DRAWINGS["heads_concat"]()))
    bars = [float(r.get("height")) for r in root.iter(f"{SVG}rect") if r.get("stroke") == diagrams.COLOURS["weight"]]
    assert bars == pytest.approx([60 * w / 0.5 for w in (0.1, 0.2, 0.3, 0.4, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0)])
    text = " | ".join(_texts("heads_concat"))
    assert "nq × d = 4 × 6" in text and "nq × h·dh = 4 × 6" in text and "dh = 3" in text  # subscripts: tspans
    assert "head 0" in text and "head 1" in text and "head 2" not in text and "→ 4 × 6" in text


def test_reversal_links_each_target_to_its_source():
    texts = _texts("reversal")
    assert texts[2:18:2] == ["3", "1", "4", "1", "5", "9", "2", "6"]
    assert texts[3:18:2] == ["6", "2", "9", "5", "1", "4", "1", "3"]
    root = _parse(str(DRAWINGS["reversal"]()))
    links = [(float(e.get("x1")), float(e.get("x2"))) for e in root.iter(f"{SVG}line")]
    assert len(links) == 8 and all(abs((a + b) - (links[0][0] + links[0][1])) < 1e-6 for a, b in links)


def test_inline_html_scales_down_and_carries_the_alt_text():
    drawing = DRAWINGS["soft_lookup"]()
    html = drawing._repr_html_()
    root = _parse(html)
    assert root.get("data-diagram") == "soft-lookup" and "max-width:100%" in root.get("style")
    assert "height:auto" in root.get("style") and root.get("viewBox")
    assert drawing._repr_svg_() == str(drawing) and "data-diagram" not in str(drawing)
    alt = 'Query "q" & keys <k>'
    labelled = _parse(diagrams.labelled(html, alt))
    assert labelled.get("role") == "img" and labelled.get("aria-label") == alt
    assert _text(labelled.find(f"{SVG}title")) == alt and list(labelled)[0].tag == f"{SVG}title"
    with pytest.raises(ValueError):
        diagrams.labelled(str(drawing), alt)  # a standalone SVG is not an inline diagram


def test_too_wide_or_too_small_is_refused():
    with pytest.raises(ValueError):
        diagrams.Drawing(diagrams.MAX_WIDTH + 1, 100, "wide")
    with pytest.raises(ValueError):
        diagrams.Drawing(100, 100, "small").text(0, 0, "tiny", size=diagrams.MIN_FONT - 1)


def test_subscripts_are_tspans_and_code_names_are_not():
    d = diagrams.Drawing(200, 50, "sub")
    d.text(10, 20, "W_q and d_{out} and W_query")
    svg = str(d)
    assert f'<tspan dy="4.5" font-size="{diagrams.MIN_FONT}">q</tspan>' in svg  # shifted, never under 14 px
    assert ">out</tspan>" in svg and "W_query" in svg


def test_the_chapters_show_their_diagrams():
    wanted = [  # (page, function): a page may show several
        ("book/attention-pooling/queries-keys-values", "soft_lookup"),
        ("book/self-attention/queries-keys-values", "self_attention"),
        ("book/multi-head/efficient-reshapes", "multi_head"),
        ("book/masking/cross-attention-masks", "masks"),
        ("book/efficient-attention/blockwise-attention", "blockwise_merge"),
        ("book/modern-attention/grouped-query-attention", "head_groups"),
        ("book/capstone/transformer-block", "transformer_block"),
        ("book/scoring-functions/additive-attention", "scoring"),
        ("book/self-attention/positional-encoding", "positional_waves"),
        ("book/efficient-attention/blockwise-attention", "causal_tiles"),
        ("book/modern-attention/rotary-embeddings", "rope_pairs"),
        ("book/modern-attention/kv-cache", "kv_cache"),
        ("book/modern-attention/sliding-window", "window_reach"),
        ("book/scoring-functions/masked-softmax", "weight_rows"),
        ("book/masking/attention-dropout", "weight_rows"),
        ("book/attention-pooling/nadaraya-watson", "kernel_pooling"),
        ("book/multi-head/the-math", "heads_concat"),
        ("book/capstone/training", "reversal"),
    ]
    for page, function in wanted:
        assert any(f"diagrams.{function}(" in c.source for c in diagram_cells(page)), (page, function)


def test_every_diagram_is_shown_by_a_page():
    shown = {
        name
        for page in DIAGRAM_PAGES
        for c in diagram_cells(page)
        for name in DRAWINGS
        if f"diagrams.{name}(" in c.source
    }
    assert shown == set(DRAWINGS), set(DRAWINGS) - shown


def test_every_chapter_has_at_least_two_diagrams():
    chapters = {p.split("/")[1] for p in PAGES if p.count("/") == 2 and p.split("/")[1] != "assignments"}
    per_chapter = {c: sum(len(diagram_cells(p)) for p in DIAGRAM_PAGES if p.split("/")[1] == c) for c in chapters}
    assert len(per_chapter) >= 8 and all(n >= 2 for n in per_chapter.values()), per_chapter


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
def test_built_page_shows_each_diagram_inline_with_alt(page):
    """In the built page each diagram is an inline `<svg>` (text in the page, selectable), never an `<img>`, and
    carries its cell's alt text as `role="img"`, `aria-label` and `<title>`."""
    from html import unescape

    from sitebuild import built_html

    html_dir = built_html()
    html = (html_dir / f"{page}.html").read_text()
    for cell in diagram_cells(page):
        name = cell.metadata["mystnb"]["figure"]["name"]
        alt = cell.metadata["mystnb"]["image"]["alt"]
        match = re.search(rf'<figure[^>]*id="{re.escape(name)}"[^>]*>(.*?)</figure>', html, re.S)
        assert match, f"{page}: figure {name} not in the built page"
        assert "<img" not in match.group(1), f"{page}: {name} is shown as an image, its text not selectable"
        svg = re.search(r"<svg\b.*?</svg>", match.group(1), re.S)
        assert svg, f"{page}: figure {name} has no inline SVG"
        root = _parse(svg.group(0))
        assert root.get("role") == "img" and unescape(root.get("aria-label")) == alt, f"{page}: {name}: alt text"
        assert _text(root.find(f"{SVG}title")) == alt
        assert root.findall(f".//{SVG}text"), f"{page}: {name}: no <text>"
    ids = re.findall(r'<marker id="([^"]+)"', html)
    assert len(ids) == len(set(ids)), f"{page}: two diagrams share an id: {ids}"
