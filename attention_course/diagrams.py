"""The course's concept diagrams, drawn as SVG from code: one visual language for the whole book.

Every diagram is a function that returns a `Drawing`; a page shows one by ending a (hidden, `remove-input`) code
cell with the call, so the page's execution by the book build writes the SVG: a diagram can never be older than
the code that draws it, and where it depicts a computation the page passes in the sizes or values its own code
computed (the shapes drawn are the shapes the page prints).

The visual language:

- **one palette** (Okabe and Ito's, safe in every common colour-vision deficiency): queries blue, keys orange,
  values bluish green, attention weights reddish purple, the residual path and anything new vermilion; mask
  cells use `plotting.MASK_COLOURS`, the colours of the course's mask heatmaps. Colour only fills and outlines
  shapes; every text is near-black on white or on a light tint, so colour never carries meaning alone;
- **one font** (`FONT_FAMILY`), text as SVG `<text>` (selectable, searchable, replaceable by a translation), in
  two sizes, never below `MIN_FONT` px, subscripts included (`W_q`, `d_{out}` are `<tspan>`s, shifted down);
- **one arrow style** (one marker, near-black, 1.6 px);
- widths of at most `MAX_WIDTH` px, so that at a 375-pixel phone width text stays at least about 9 px high.
"""

from __future__ import annotations

import math
import re
from xml.sax.saxutils import escape, quoteattr

from attention_course.plotting import MASK_COLOURS

COLOURS = {
    "query": "#0072B2",  # blue
    "key": "#E69F00",  # orange
    "value": "#009E73",  # bluish green
    "weight": "#CC79A7",  # reddish purple
    "residual": "#D55E00",  # vermilion
    "neutral": "#7a7a7a",  # grey: layers that are neither
}
INK = "#1a1a1a"
FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"
FONT = 15
SMALL = 14
MIN_FONT = 14
MAX_WIDTH = 520
MASK_OFF, MASK_ON = MASK_COLOURS  # masked out, may attend


def tint(colour: str, amount: float = 0.2) -> str:
    """`colour` mixed with white: `amount` of the colour (the fill of a box outlined in that colour)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(255 - amount * (255 - c)):02x}" for c in (r, g, b))


_MARKUP = re.compile(r"([_^])(?:\{([^}]*)\}|(\w)(?!\w))")


def _rich(text: str, size: float) -> str:
    """`text` as SVG text content: `_x`/`_{xy}` subscripts and `^x`/`^{xy}` superscripts become tspans."""
    segments, pos = [], 0
    for m in _MARKUP.finditer(text):
        segments.append((text[pos : m.start()], 0.0))
        body = m.group(2) if m.group(2) is not None else m.group(3)
        segments.append((body, (0.3 if m.group(1) == "_" else -0.45) * size))
        pos = m.end()
    segments.append((text[pos:], 0.0))
    out, level = [], 0.0
    for body, shift in segments:
        if not body:
            continue
        small = f' font-size="{max(MIN_FONT, 0.75 * size):g}"' if shift else ""
        if shift == level and not small:
            out.append(escape(body))
        else:
            out.append(f'<tspan dy="{shift - level:g}"{small}>{escape(body)}</tspan>')
        level = shift
    return "".join(out)


class Drawing:
    """A small SVG canvas in pixels (width at most `MAX_WIDTH`); `str(drawing)` is the SVG document."""

    def __init__(self, width: float, height: float, name: str):
        if width > MAX_WIDTH:
            raise ValueError(f"{name}: {width} px is wider than {MAX_WIDTH} px (illegible on a phone)")
        self.width, self.height, self.name = width, height, name
        self.items: list[str] = []

    # primitives -------------------------------------------------------------------------------------------
    def rect(self, x, y, w, h, *, fill="none", stroke=INK, rx=5.0, stroke_width=1.5, dash=None) -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="{rx:g}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{stroke_width:g}"{extra}/>'
        )

    def text(self, x, y, text, *, size=FONT, anchor="middle", bold=False, italic=False) -> None:
        """Text whose baseline's centre (anchor "middle") or start/end is at (x, y)."""
        if size < MIN_FONT:
            raise ValueError(f"{self.name}: font size {size} < {MIN_FONT}")
        style = (' font-weight="bold"' if bold else "") + (' font-style="italic"' if italic else "")
        self.items.append(
            f'<text x="{x:g}" y="{y:g}" font-size="{size:g}" text-anchor="{anchor}"{style}>{_rich(text, size)}</text>'
        )

    def line(self, x1, y1, x2, y2, *, colour=INK, width=1.5, dash=None) -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="{colour}" stroke-width="{width:g}"{extra}/>'
        )

    def arrow(self, *points, colour=INK, dash=None) -> None:
        """A polyline through `points` ((x, y) pairs) ending in the course's one arrow head."""
        coords = " ".join(f"{x:g},{y:g}" for x, y in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.6"{extra} '
            f'marker-end="url(#{self.name}-arrow)"/>'
        )

    def circle(self, cx, cy, r, *, fill="white", stroke=INK) -> None:
        self.items.append(
            f'<circle cx="{cx:g}" cy="{cy:g}" r="{r:g}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        )

    def curve(self, points, *, colour=INK, width=1.5, dash=None) -> None:
        """A polyline through `points` ((x, y) pairs), no arrow head: a plotted function."""
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{width:g}"{extra}/>'
        )

    # composites -------------------------------------------------------------------------------------------
    def box(self, x, y, w, h, label, *, role=None, note=None, size=FONT, bold=False) -> None:
        """A rounded box outlined (and lightly filled) in the role's colour, `label` centred, `note` below it."""
        colour = COLOURS[role] if role else INK
        self.rect(x, y, w, h, fill=tint(colour) if role else "white", stroke=colour, stroke_width=2 if role else 1.5)
        if note is None:
            self.text(x + w / 2, y + h / 2 + 0.35 * size, label, size=size, bold=bold)
        else:
            self.text(x + w / 2, y + h / 2 - 3, label, size=size, bold=bold)
            self.text(x + w / 2, y + h / 2 + SMALL + 1, note, size=SMALL)

    def plus(self, cx, cy, r=11) -> None:
        """The residual addition: a circled plus in the residual colour."""
        self.circle(cx, cy, r, fill=tint(COLOURS["residual"], 0.15), stroke=COLOURS["residual"])
        self.line(cx - r + 4, cy, cx + r - 4, cy, colour=COLOURS["residual"], width=2)
        self.line(cx, cy - r + 4, cx, cy + r - 4, colour=COLOURS["residual"], width=2)

    def cells(self, x, y, grid, cell, *, colours, border="white") -> None:
        """A grid of square cells: `grid[i][j]` indexes `colours`."""
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                self.rect(
                    x + j * cell, y + i * cell, cell, cell, fill=colours[value], stroke=border, rx=0, stroke_width=1
                )

    # output -----------------------------------------------------------------------------------------------
    def svg(self, *, inline: bool = False) -> str:
        """The SVG document; `inline`: as an element of an HTML page (marked `data-diagram`, scaled down to the
        width of its container, never up)."""
        page = f' data-diagram="{self.name}" style="max-width:100%;height:auto"' if inline else ""
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width:g}" height="{self.height:g}" '
            f'viewBox="0 0 {self.width:g} {self.height:g}" font-family="{FONT_FAMILY}" fill="{INK}"{page}>\n'
            f'<defs><marker id="{self.name}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{INK}"/>'
            "</marker></defs>\n"
            f'<rect width="100%" height="100%" fill="white"/>\n'
        )
        return head + "\n".join(self.items) + "\n</svg>\n"

    def __str__(self) -> str:
        return self.svg()

    def _repr_svg_(self) -> str:  # image/svg+xml: the picture for formats that cannot hold inline SVG
        return self.svg()

    def _repr_html_(self) -> str:
        """text/html, which the HTML build prefers: the SVG inline in the page, so its text is real, selectable
        text (an `<img>` of an .svg file is not). `attention_course.sphinx_fixes` gives it the cell's alt text
        (`labelled`)."""
        return self.svg(inline=True)


def labelled(html: str, alt: str) -> str:
    """An inline diagram (`Drawing._repr_html_`) with its alt text: `role="img"` and `aria-label` on the `<svg>`
    (what a screen reader says) and a `<title>` (the tooltip)."""
    opening = re.match(r"<svg\b[^>]*>", html)
    if opening is None or "data-diagram=" not in opening.group(0):
        raise ValueError("not an inline diagram")
    end = opening.end()
    return html[: end - 1] + f' role="img" aria-label={quoteattr(alt)}>' + f"<title>{escape(alt)}</title>" + html[end:]


# the diagrams -----------------------------------------------------------------------------------------------


def soft_lookup(query, keys, values, weights) -> Drawing:
    """Attention pooling as a soft lookup: one query, each key's weight, the weighted sum of the values.

    `query` (d,), `keys` (m, d), `values` (m, d_v) with d_v = 1, `weights` (m,): the page's tensors."""

    def vec(t):
        return "(" + ", ".join(f"{float(v):.1f}" for v in t) + ")"

    m = len(keys)
    d = Drawing(500, 96 + 62 * m, "soft-lookup")
    top = 58
    d.text(60, 24, "query", size=SMALL)
    d.text(205, 24, "keys", size=SMALL)
    d.text(330, 24, "weights", size=SMALL)
    d.text(440, 24, "values", size=SMALL)
    qy = top + 62 * (m - 1) / 2
    d.box(10, qy, 100, 40, "q", role="query", note=vec(query))
    for j in range(m):
        y = top + 62 * j
        d.arrow((110, qy + 20), (152, y + 20))
        d.box(155, y, 100, 40, f"k_{j + 1}", role="key", note=vec(keys[j]))
        d.arrow((255, y + 20), (290, y + 20))
        w = float(weights[j])
        d.rect(292, y + 6, 76, 28, fill="white", stroke=COLOURS["weight"], stroke_width=1)
        d.rect(292, y + 6, 76 * w, 28, fill=tint(COLOURS["weight"], 0.55), stroke="none", rx=0)
        d.text(330, y + 25, f"α_{j + 1} = {w:.2f}", size=SMALL)
        d.arrow((368, y + 20), (393, y + 20))
        d.box(395, y, 90, 40, f"v_{j + 1}", role="value", note=vec(values[j]))
    bottom = top + 62 * m
    answer = float(sum(float(w) * float(v[0]) for w, v in zip(weights, values)))
    d.text(250, bottom + 26, f"output = Σ α_j v_j = {answer:.2f}", size=FONT)
    return d


def self_attention() -> Drawing:
    """Self-attention: one sequence X projected three ways, scores, softmax, the weighted sum of the values."""
    d = Drawing(500, 372, "self-attention")
    d.box(175, 10, 150, 46, "X", note="n × d_{in}", bold=True)
    xs = {"query": 20, "key": 185, "value": 350}
    names = {"query": ("W_q", "Q = X W_q"), "key": ("W_k", "K = X W_k"), "value": ("W_v", "V = X W_v")}
    for role, x in xs.items():
        d.arrow((250, 56), (x + 65, 104))
        d.text({"query": 150, "key": 268, "value": 350}[role], 78, names[role][0], size=SMALL)
        d.box(x, 106, 130, 46, names[role][1], role=role, note="n × d_{out}")
    d.arrow((85, 152), (85, 221), (98, 221))
    d.arrow((250, 152), (250, 196))
    d.box(100, 198, 300, 46, "scores Q Kᵀ / √d_{out}", note="n × n: row i = query i")
    d.arrow((250, 244), (250, 266))
    d.box(100, 268, 300, 40, "weights A = softmax(scores)", role="weight", size=SMALL)
    d.arrow((415, 152), (415, 330), (402, 330))
    d.arrow((250, 308), (250, 318))
    d.box(130, 318, 270, 46, "output A V", note="n × d_{out}")
    return d


def multi_head(shapes: dict) -> Drawing:
    """Multi-head attention in the batched form, each step with the shape the page computed.

    `shapes` maps the steps "projected", "split", "heads", "attended", "concatenated", "output" to tuples."""

    def s(name):
        return "(" + ", ".join(str(v) for v in shapes[name]) + ")"

    d = Drawing(500, 494, "multi-head")
    steps = [
        ("projected", "Q = W_q(queries), also K, V", "query", "(B, n, h·d_h) = " + s("projected")),
        ("split", "split features into h heads", None, "(B, n, h, d_h) = " + s("split")),
        ("heads", "heads next to the batch", None, "(B·h, n, d_h) = " + s("heads")),
        ("attended", "one batched attention", "weight", "(B·h, n, d_h) = " + s("attended")),
        ("concatenated", "concatenate the heads", None, "(B, n, h·d_h) = " + s("concatenated")),
        ("output", "W_o: mix the heads", "value", "(B, n, h·d_h) = " + s("output")),
    ]
    y = 8
    for k, (_, label, role, note) in enumerate(steps):
        d.box(40, y, 420, 54, label, role=role, note=note)
        if k < len(steps) - 1:
            d.arrow((250, y + 54), (250, y + 76))
        y += 78
    d.text(250, y + 4, "transpose_qkv: the 2nd and 3rd steps; transpose_output: the 5th", size=SMALL)
    return d


def masks(n_q: int, n_k: int, n_src: int, valid_src: int) -> Drawing:
    """The three masks of an encoder-decoder model, True = may attend, for one sentence pair.

    Encoder self-attention (n_src x n_src, padded keys masked), decoder self-attention (n_q x n_q, causal),
    cross-attention (n_q x n_k, padded source keys masked)."""
    cell = 22
    pad = [[int(j < valid_src) for j in range(n_src)] for _ in range(n_src)]
    causal = [[int(j <= i) for j in range(n_q)] for i in range(n_q)]
    cross = [[int(j < valid_src) for j in range(n_k)] for _ in range(n_q)]
    panels = [
        ("padding", "encoder self-attention", pad, f"{n_src} × {n_src}"),
        ("causal", "decoder self-attention", causal, f"{n_q} × {n_q}"),
        ("cross", "cross-attention", cross, f"{n_q} × {n_k}"),
    ]
    d = Drawing(500, 290, "masks")
    x = 12
    colours = {0: MASK_OFF, 1: MASK_ON}
    for title, sub, grid, size in panels:
        w = cell * len(grid[0])
        cx = x + w / 2
        d.text(cx, 22, title, bold=True)
        d.text(cx, 42, sub.split()[0], size=SMALL)
        if len(sub.split()) > 1:
            d.text(cx, 60, " ".join(sub.split()[1:]), size=SMALL)
        d.cells(x, 74, grid, cell, colours=colours)
        d.rect(x, 74, w, cell * len(grid), stroke=INK, rx=0, stroke_width=1)
        d.text(cx, 74 + cell * len(grid) + 22, size + " (n_q × n_k)" if title == "cross" else size, size=SMALL)
        x += w + 40
    d.text(12, 226, "rows: queries; columns: keys", size=SMALL, anchor="start")
    d.rect(12, 244, 18, 18, fill=MASK_ON, stroke=INK, rx=0, stroke_width=1)
    d.text(36, 258, "may attend (True)", size=SMALL, anchor="start")
    d.rect(200, 244, 18, 18, fill=MASK_OFF, stroke=INK, rx=0, stroke_width=1)
    d.text(224, 258, "masked out (False)", size=SMALL, anchor="start")
    return d


def blockwise_merge(n_q: int, n_k: int, block: int) -> Drawing:
    """Blockwise attention: the n_q x n_k scores cut into blocks of `block` keys (the last one may be shorter);
    each block gives a `Partial` (out, max, sum), and `merge` folds them in order, bringing both to their common
    maximum; at the end out / sum is the attention output. At most 4 blocks."""
    blocks = -(-n_k // block)
    if blocks > 4:
        raise ValueError(f"{blocks} blocks: draw at most 4")
    d = Drawing(500, 470, "blockwise-merge")
    cell = min(18.0, 470 / n_k)
    x0 = (500 - cell * n_k) / 2
    d.text(250, 18, f"scores: {n_q} queries × {n_k} keys in blocks of {block} keys", size=SMALL)
    fills = [tint(COLOURS["key"], 0.35), tint(COLOURS["key"], 0.75)]
    centres = []
    for b in range(blocks):
        cols = min(block, n_k - b * block)
        x = x0 + b * block * cell
        d.cells(x, 28, [[b % 2] * cols for _ in range(n_q)], cell, colours=fills)
        d.rect(x, 28, cols * cell, n_q * cell, stroke=INK, rx=0, stroke_width=1.5)
        centres.append(x + cols * cell / 2)
    top = 28 + n_q * cell + 14
    width = min(140, 480 / blocks - 10)
    spots = [250 + (b - (blocks - 1) / 2) * (width + 14) for b in range(blocks)]
    for b, (c, s) in enumerate(zip(centres, spots)):
        d.arrow((c, top - 14), (s, top + 16))
        d.box(s - width / 2, top + 18, width, 46, f"Partial {b + 1}", role="weight", note="out, max, sum", size=SMALL)
    y = top + 64
    previous = spots[0]
    for b in range(1, blocks):
        d.arrow((previous, y if b == 1 else y), (250 - 20, y + 30))
        d.arrow((spots[b], top + 64 if b == 1 else top + 64), (250 + 20, y + 30))
        d.box(170, y + 32, 160, 34, "merge", size=SMALL)
        previous, y = 250, y + 66
    d.arrow((250, y), (250, y + 20))
    d.box(150, y + 22, 200, 34, "output = out / sum", size=SMALL)
    y += 74
    d.rect(10, y, 480, 92, stroke=COLOURS["neutral"], dash="4 3")
    d.text(24, y + 24, "merge(a, b):  top = max(a.max, b.max)", size=SMALL, anchor="start")
    d.text(24, y + 50, "out = a.out·e^{a.max − top} + b.out·e^{b.max − top}", size=SMALL, anchor="start")
    d.text(24, y + 76, "sum = a.sum·e^{a.max − top} + b.sum·e^{b.max − top}", size=SMALL, anchor="start")
    d.height = y + 100
    return d


def head_groups(heads: int, groups_list=(8, 2, 1)) -> Drawing:
    """Which key/value head each query head reads: multi-head, grouped-query, multi-query attention, stacked."""
    names = {heads: "multi-head", 1: "multi-query"}
    d = Drawing(500, 12 + 132 * len(groups_list), "head-groups")
    step = 460 / heads
    for row, groups in enumerate(groups_list):
        top = 10 + 132 * row
        per = heads // groups
        title = names.get(groups, "grouped-query")
        d.text(20, top + 14, f"{title}: h = {heads} query heads, g = {groups}", size=SMALL, anchor="start")
        for r in range(heads):
            qx = 20 + step * (r + 0.5)
            gx = 20 + step * ((r // per) * per + per / 2)
            d.line(qx, top + 48, gx, top + 86, colour=COLOURS["neutral"])
            d.rect(qx - 17, top + 24, 34, 26, fill=tint(COLOURS["query"]), stroke=COLOURS["query"], stroke_width=2)
            d.text(qx, top + 42, str(r), size=SMALL)
        for g in range(groups):
            gx = 20 + step * (g * per + per / 2)
            w = max(34, step * per - 10)
            d.rect(gx - w / 2, top + 86, w, 28, fill=tint(COLOURS["value"]), stroke=COLOURS["key"], stroke_width=2.5)
            d.text(gx, top + 105, f"K,V {g}" if w > 50 else str(g), size=SMALL)
    return d


def transformer_block() -> Drawing:
    """Post-norm (left, the original Transformer) and pre-norm (right) blocks side by side, bottom to top.

    The residual path (vermilion) branches off before each sublayer and joins at the circled plus."""
    d = Drawing(500, 432, "transformer-block")
    attention = ("multi-head attention", 40, "weight")
    ffn = ("feed-forward (FFN)", 40, "neutral")
    norm = ("LayerNorm", 32, None)
    plus = ("+", 22, None)
    post = [attention, plus, norm, ffn, plus, norm]  # residual: before item 0 to item 1, before 3 to 4
    pre = [norm, attention, plus, norm, ffn, plus]  # residual: before 0 to 2, before 3 to 5
    for x0, title, items, residuals in (
        (10, "post-norm", post, ((0, 1), (3, 4))),
        (260, "pre-norm", pre, ((0, 2), (3, 5))),
    ):
        cx = x0 + 115
        d.text(cx, 20, title, bold=True)
        d.text(cx, 424, "input X", size=SMALL)
        cur, spans = 404, []
        for label, h, role in items:
            bottom = cur - 20
            top = bottom - h
            d.arrow((cx, cur), (cx, bottom))
            if label == "+":
                d.plus(cx, top + 11)
            else:
                width = 200 if role else 150
                d.box(cx - width / 2, top, width, h, label, role=role, size=SMALL)
            spans.append((top, bottom, cur))
            cur = top
        d.arrow((cx, cur), (cx, cur - 24))
        d.text(cx, cur - 30, "output", size=SMALL)
        for branch, join in residuals:
            by = (spans[branch][1] + spans[branch][2]) / 2
            jy = spans[join][0] + 11
            d.arrow((cx, by), (x0 + 5, by), (x0 + 5, jy), (cx - 12, jy), colour=COLOURS["residual"])
    d.line(250, 34, 250, 420, colour=COLOURS["neutral"], width=1, dash="4 4")
    return d


def scoring(d_q: int, d_k: int, hidden: int) -> Drawing:
    """Additive attention (left) next to the scaled dot product (right): what each does with one query and one key.

    `d_q`, `d_k`: the sizes of the page's queries and keys; `hidden`: the additive module's hidden units."""
    d = Drawing(500, 392, "scoring")
    d.line(250, 8, 250, 384, colour=COLOURS["neutral"], width=1, dash="4 4")
    # additive: two projections, a sum, tanh, w_v
    d.text(125, 22, "additive", bold=True)
    d.box(8, 36, 108, 46, "q", role="query", note=f"1 × {d_q}")
    d.box(134, 36, 108, 46, "k", role="key", note=f"1 × {d_k}")
    d.arrow((62, 82), (62, 106))
    d.arrow((188, 82), (188, 106))
    d.box(8, 108, 108, 46, "q W_q", role="query", note=f"1 × {hidden}")
    d.box(134, 108, 108, 46, "k W_k", role="key", note=f"1 × {hidden}")
    d.arrow((62, 154), (62, 182), (111, 182))
    d.arrow((188, 154), (188, 182), (139, 182))
    d.plus(125, 182)
    d.arrow((125, 193), (125, 214))
    d.box(55, 216, 140, 34, f"tanh: {hidden} numbers", size=SMALL)
    d.arrow((125, 250), (125, 270))
    d.box(55, 272, 140, 34, "· w_v → 1 number", size=SMALL)
    d.arrow((125, 306), (125, 324))
    d.box(75, 326, 100, 30, "score", role="weight", size=SMALL)
    d.text(125, 378, f"weights: {hidden}·({d_q} + {d_k} + 1) = {hidden * (d_q + d_k + 1)}", size=SMALL)
    # scaled dot product: one multiplication
    d.text(375, 22, "scaled dot product", bold=True)
    d.box(258, 36, 108, 46, "q", role="query", note="1 × d")
    d.box(384, 36, 108, 46, "k", role="key", note="1 × d")
    d.arrow((312, 82), (312, 160), (340, 186))
    d.arrow((438, 82), (438, 160), (410, 186))
    d.box(300, 188, 150, 40, "q kᵀ / √d", size=SMALL)
    d.text(375, 118, "same size d", size=SMALL)
    d.arrow((375, 228), (375, 324))
    d.box(325, 326, 100, 30, "score", role="weight", size=SMALL)
    d.text(375, 378, "weights: none", size=SMALL)
    return d


def positional_waves(table, pairs=(0, 2, 4, 8), position: int = 5) -> Drawing:
    """Columns of the sinusoidal encoding as waves along the positions, one row per (sine, cosine) pair, fast to
    slow, and the code of one position read off every wave.

    `table`: the page's P, (positions, d); `pairs`: which column pairs j (columns 2j and 2j + 1) to draw;
    `position`: the row whose values are marked. The frequency of pair j is 10000^(-2j/d)."""
    n, dim = table.shape
    rows = len(pairs)
    d = Drawing(500, 70 + 86 * rows, "positional-waves")
    left, right = 150, 488
    step = (right - left) / (n - 1)
    d.text(left, 22, "sine (solid), cosine (dashed) of the position", size=SMALL, anchor="start")
    px = left + position * step
    for r, j in enumerate(pairs):
        top = 36 + 86 * r
        mid = top + 34
        omega = 10000.0 ** (-2 * j / dim)
        d.text(8, mid - 8, f"pair j = {j}", size=SMALL, anchor="start")
        d.text(8, mid + 12, f"ω = {omega:.3g}", size=SMALL, anchor="start")
        d.line(left, mid, right, mid, colour=COLOURS["neutral"], width=1)
        for column, dash in ((2 * j, None), (2 * j + 1, "5 3")):
            values = [float(v) for v in table[:, column]]
            d.curve(
                [(left + i * step, mid - 28 * v) for i, v in enumerate(values)],
                colour=COLOURS["query"],
                width=2,
                dash=dash,
            )
            d.circle(px, mid - 28 * values[position], 4, fill=COLOURS["residual"], stroke=COLOURS["residual"])
        sine, cosine = float(table[position, 2 * j]), float(table[position, 2 * j + 1])
        d.text(8, mid + 32, f"p = ({sine:.2f}, {cosine:.2f})", size=SMALL, anchor="start")
    bottom = 36 + 86 * rows
    d.line(px, 30, px, bottom - 8, colour=COLOURS["residual"], width=1.2, dash="3 3")
    d.text(px, bottom + 8, f"position {position}", size=SMALL)
    d.text(left, bottom + 28, "0", size=SMALL)
    d.text(right, bottom + 28, f"{n - 1}", size=SMALL, anchor="end")
    d.text((left + right) / 2 + 40, bottom + 28, "position →", size=SMALL)
    return d


def causal_tiles(kind, block: int) -> Drawing:
    """Causal attention tiled into blocks of `block` queries × `block` keys: per score entry `kind` (the page's
    (n, n) tensor) is 0 (skipped with its whole tile), 1 (masked inside a diagonal tile) or 2 (computed)."""
    n = len(kind)
    cell = min(17.5, 280 / n)
    d = Drawing(500, 70 + n * cell, "causal-tiles")
    x0, y0 = 30, 42
    skipped = "white"
    d.cells(x0, y0, [[int(v) for v in row] for row in kind], cell, colours={0: skipped, 1: MASK_OFF, 2: MASK_ON})
    tiles = -(-n // block)
    counts = {"skipped": 0, "diagonal": 0, "full": 0}
    for ti in range(tiles):
        for tj in range(tiles):
            x, y = x0 + tj * block * cell, y0 + ti * block * cell
            side = block * cell
            tile = [
                int(kind[i][j])
                for i in range(ti * block, min(n, (ti + 1) * block))
                for j in range(tj * block, min(n, (tj + 1) * block))
            ]
            what = "skipped" if max(tile) == 0 else "diagonal" if min(tile) < 2 else "full"
            counts[what] += 1
            d.rect(x, y, side, side, stroke=INK, rx=0, stroke_width=1.5, dash="4 3" if what == "skipped" else None)
            if what == "skipped" and side >= 40:
                d.text(x + side / 2, y + side / 2 + 5, "skip", size=SMALL)
    d.text(x0 + n * cell / 2, 22, "keys j →", size=SMALL)
    d.text(x0 + n * cell / 2, y0 + n * cell + 22, f"{n} × {n} scores, tiles of {block} × {block}", size=SMALL)
    lx = x0 + n * cell + 24
    legend = [
        (MASK_ON, None, f"computed: {counts['full']} full tiles"),
        (MASK_OFF, None, f"masked: in {counts['diagonal']} diagonal tiles"),
        (skipped, "4 3", f"skipped: {counts['skipped']} tiles"),
    ]
    for k, (fill, dash, label) in enumerate(legend):
        y = y0 + 10 + 34 * k
        d.rect(lx, y, 20, 20, fill=fill, stroke=INK, rx=0, stroke_width=1, dash=dash)
        d.text(lx + 28, y + 15, label.split(":")[0] + ":", size=SMALL, anchor="start")
        d.text(lx + 28, y + 33, label.split(": ")[1], size=SMALL, anchor="start")
    d.text(lx, y0 + 150, "queries i ↓", size=SMALL, anchor="start")
    return d


def rope_pairs(turned, positions=(0, 1, 2, 3)) -> Drawing:
    """RoPE as rotations: each pair of features (x_2j, x_2j+1) of one vector drawn as an arrow on a dial, at each
    of `positions`; pair j turns by ω_j per position. `turned`: the page's rotated vectors, (positions, d), d ≤ 6."""
    dim = turned.shape[1]
    pairs = dim // 2
    if pairs > 3:
        raise ValueError(f"{pairs} pairs: draw at most 3")
    d = Drawing(500, 330, "rope-pairs")
    d.text(250, 22, f"one vector at positions {positions[0]}–{positions[-1]}: each feature pair turns", size=SMALL)
    spacing = 500 / pairs
    radius = min(64.0, spacing / 2 - 60)
    for j in range(pairs):
        cx, cy = spacing * (j + 0.5), 150
        d.circle(cx, cy, radius, fill="white", stroke=COLOURS["neutral"])
        d.line(cx - radius - 8, cy, cx + radius + 8, cy, colour=COLOURS["neutral"], width=1)
        d.line(cx, cy - radius - 8, cx, cy + radius + 8, colour=COLOURS["neutral"], width=1)
        angles = [math.atan2(float(turned[p, 2 * j + 1]), float(turned[p, 2 * j])) for p in positions]
        labelled_at = []
        for p, angle in zip(positions, angles):
            length = math.hypot(float(turned[p, 2 * j]), float(turned[p, 2 * j + 1]))
            tip = (cx + radius * math.cos(angle) * min(1.0, length), cy - radius * math.sin(angle) * min(1.0, length))
            d.arrow((cx, cy), tip, colour=COLOURS["query"])
            if all(abs(angle - a) > 0.35 for a in labelled_at):
                labelled_at.append(angle)
                lx, ly = cx + (radius + 12) * math.cos(angle), cy - (radius + 14) * math.sin(angle) + 5
                side = "start" if math.cos(angle) > 0.3 else "end" if math.cos(angle) < -0.3 else "middle"
                crowd = [q for q, a in zip(positions, angles) if abs(a - angle) <= 0.35]
                label = f"p={crowd[0]}" if len(crowd) == 1 else f"p={crowd[0]}–{crowd[-1]}"
                d.text(lx, ly, label, size=SMALL, anchor=side)
        step = angles[1] - angles[0] if len(angles) > 1 else 0.0
        d.text(cx, cy + radius + 44, f"pair {j}: x_{2 * j}, x_{2 * j + 1}", size=SMALL)
        d.text(cx, cy + radius + 64, f"turns {step:.2f} rad per position", size=SMALL)
    d.text(250, 320, "lengths never change: only the direction carries the position", size=SMALL)
    return d


def kv_cache(tokens, prompt_len: int, steps: int = 3, cache_shape=None) -> Drawing:
    """The key–value cache across decoding steps: the prompt in one pass, then one new token per step whose key
    and value are appended to the cache and whose query reads all of them.

    `tokens`: the page's generated sequence (one row); `prompt_len`; `steps`: how many decoding steps to draw;
    `cache_shape`: the shape of one layer's cached keys, (batch, groups, steps, head_dim), shown with the
    length of each step."""
    total = prompt_len + steps
    cell = min(34.0, 300 / total)
    d = Drawing(500, 96 + 58 * (steps + 1), "kv-cache")
    x0 = 84
    d.text(x0 + total * cell / 2, 22, "token positions →", size=SMALL)
    new_fill, cached_fill = tint(COLOURS["residual"], 0.3), tint(COLOURS["key"], 0.3)
    for row in range(steps + 1):
        y = 36 + 58 * row
        length = prompt_len + row
        d.text(8, y + 22, "prompt" if row == 0 else f"step {row}", size=SMALL, anchor="start")
        for pos in range(length):
            new = pos >= prompt_len + row - 1 if row else True
            fill, stroke = (new_fill, COLOURS["residual"]) if new else (cached_fill, COLOURS["key"])
            d.rect(x0 + pos * cell, y, cell - 3, 32, fill=fill, stroke=stroke, rx=3, stroke_width=1.5)
            d.text(x0 + pos * cell + (cell - 3) / 2, y + 22, str(int(tokens[pos])), size=SMALL)
        queries = prompt_len if row == 0 else 1
        tx = x0 + total * cell + 10
        d.text(tx, y + 12, f"{queries} quer{'ies' if queries > 1 else 'y'}, {length} keys", size=SMALL, anchor="start")
        if cache_shape is not None:
            shape = tuple(cache_shape[:2]) + (length,) + tuple(cache_shape[3:])
            d.text(tx, y + 31, "cache " + str(shape).replace(" ", ""), size=SMALL, anchor="start")
        if row:
            d.arrow(
                (x0 + (length - 1) * cell + (cell - 3) / 2, y - 24), (x0 + (length - 1) * cell + (cell - 3) / 2, y - 2)
            )
    y = 36 + 58 * (steps + 1)
    d.rect(8, y, 18, 18, fill=new_fill, stroke=COLOURS["residual"], rx=3)
    d.text(32, y + 14, "keys, values computed this step", size=SMALL, anchor="start")
    d.rect(8, y + 26, 18, 18, fill=cached_fill, stroke=COLOURS["key"], rx=3)
    d.text(32, y + 40, "read from the cache (numbers: the token ids)", size=SMALL, anchor="start")
    return d


def window_reach(reach, window: int) -> Drawing:
    """How far a sliding window reaches through stacked layers: the last output of the top layer, the positions it
    reads in the layer below, and so on down to the inputs: a cone that widens by `window` - 1 per layer.

    `reach`: the page's measured dependencies, a list (one per depth L = 1, 2, ...) of (n, n) bool tensors, True
    where output i after L layers depends on input j."""
    depth, n = len(reach), len(reach[0])
    gap = min(28.0, 400 / n)
    d = Drawing(500, 104 + 62 * depth, "window-reach")
    x0 = 90 + gap / 2
    last = n - 1
    # level l (0 = the inputs, depth = the top layer's outputs): which positions the top output depends on;
    # level l is read by the depth - l layers above it, whose measured reach is reach[depth - l - 1]
    levels = [[bool(v) for v in reach[depth - level - 1][last]] for level in range(depth)]
    levels.append([j == last for j in range(n)])

    def y_of(level):
        return 40 + 62 * (depth - level)

    for level in range(depth, 0, -1):
        for i in range(n):
            if not levels[level][i]:
                continue
            for j in range(max(0, i - window + 1), i + 1):
                d.line(x0 + i * gap, y_of(level) + 9, x0 + j * gap, y_of(level - 1) - 9, colour=COLOURS["neutral"])
    for level in range(depth + 1):
        y = y_of(level)
        d.text(8, y + 5, "input" if level == 0 else f"layer {level}", size=SMALL, anchor="start")
        for i in range(n):
            on = levels[level][i]
            role = "query" if level == depth else "key"
            fill = tint(COLOURS[role], 0.5) if on else "white"
            d.circle(x0 + i * gap, y, 8, fill=fill, stroke=COLOURS[role] if on else COLOURS["neutral"])
    first = levels[0].index(True)
    for pos in sorted({0, first, last}):
        d.text(x0 + pos * gap, y_of(0) + 30, str(pos), size=SMALL)
    d.text(
        250,
        y_of(0) + 52,
        f"window {window}, {depth} layers: {last - first} steps back; L(w − 1) = {depth * (window - 1)}",
        size=SMALL,
    )
    return d


def _number(v: float) -> str:
    """A cell's number: two decimals, or a power of ten for a fill value such as -1e6."""
    if abs(v) >= 1e4:
        exponent = round(math.log10(abs(v)))
        return ("−" if v < 0 else "") + f"10^{exponent}"
    return f"{v:.2f}".replace("-", "−")


def weight_rows(columns, rows, *, sums: bool = True) -> Drawing:
    """One query's row of numbers through the steps of a computation, one step per row, one key per column.

    `columns`: the keys' labels; `rows`: (label, values, kind, step) with kind "score" (numbers), "weight" (a bar
    and its number, summed at the right when `sums`) or "mask" (kept or zeroed), and `step` the operation that
    led to the row (None for the first)."""
    n = len(columns)
    left = 128
    cell = min(64.0, (500 - left - (62 if sums else 8)) / n)
    heights = [34 if kind != "weight" else 52 for _, _, kind, _ in rows]
    d = Drawing(500, 40 + sum(heights) + 36 * (len(rows) - 1) + 10, "weight-rows")
    top_weight = max((float(v) for _, values, kind, _ in rows if kind == "weight" for v in values), default=1.0)
    for j, name in enumerate(columns):
        d.text(left + (j + 0.5) * cell, 22, str(name), size=SMALL)
    y = 34
    for r, ((label, values, kind, step), h) in enumerate(zip(rows, heights)):
        if r:
            d.arrow((left - 60, y - 34), (left - 60, y - 2))
            d.text(left - 50, y - 13, step, size=SMALL, anchor="start")
        d.text(8, y + h / 2 + 5, label, size=SMALL, anchor="start")
        for j, v in enumerate(float(v) for v in values):
            x = left + j * cell
            if kind == "mask":
                kept = v != 0
                d.rect(x + 2, y, cell - 4, h, fill=MASK_ON if kept else MASK_OFF, stroke=INK, rx=2, stroke_width=1)
                if not kept:
                    d.text(x + cell / 2, y + h / 2 + 5, "0", size=SMALL)
            elif kind == "weight":
                bar = (h - 20) * v / top_weight
                d.rect(x + 2, y, cell - 4, h, fill="white", stroke=COLOURS["weight"], rx=2, stroke_width=1)
                if bar > 0:
                    d.rect(
                        x + 3, y + h - 1 - bar, cell - 6, bar, fill=tint(COLOURS["weight"], 0.55), stroke="none", rx=0
                    )
                d.text(x + cell / 2, y + 15, _number(v), size=SMALL)
            else:
                masked = abs(v) >= 1e4
                d.rect(
                    x + 2,
                    y,
                    cell - 4,
                    h,
                    fill=MASK_OFF if masked else tint(COLOURS["key"], 0.2),
                    stroke=COLOURS["key"],
                    rx=2,
                    stroke_width=1,
                )
                d.text(x + cell / 2, y + h / 2 + 5, _number(v), size=SMALL)
        if sums and kind == "weight":
            d.text(
                left + n * cell + 8, y + h / 2 + 5, f"Σ {sum(float(v) for v in values):.2f}", size=SMALL, anchor="start"
            )
        y += h + 36
    return d


def kernel_pooling(keys, values, query: float, weights, sigma: float) -> Drawing:
    """Nadaraya–Watson pooling at one query: the training points (key x, value y), the query, each key's weight
    (a stem, tallest next to the query: a Gaussian bump of width `sigma`) and the prediction Σ α_i y_i.

    `keys`, `values`, `weights`: the page's (n_k,) tensors for that query; `query`: its x."""
    xs, ys, ws = [float(v) for v in keys], [float(v) for v in values], [float(v) for v in weights]
    lo, hi = min(xs + [query]), max(xs + [query])
    y_lo, y_hi = min(ys), max(ys)
    d = Drawing(500, 372, "kernel-pooling")
    left, right = 40, 488

    def X(x):
        return left + (x - lo) / (hi - lo) * (right - left)

    def Y(y):
        return 170 - (y - y_lo) / (y_hi - y_lo) * 130

    prediction = sum(w * y for w, y in zip(ws, ys))
    d.text(8, 22, "training points (key x, value y)", size=SMALL, anchor="start")
    for x, y, w in zip(xs, ys, ws):
        d.circle(X(x), Y(y), 3 + 5 * w / max(ws), fill=tint(COLOURS["value"], 0.5), stroke=COLOURS["value"])
    d.line(X(query), 32, X(query), 340, colour=COLOURS["query"], width=1.5, dash="5 3")
    d.circle(X(query), Y(prediction), 6, fill=COLOURS["query"], stroke=INK)
    d.circle(14, 191, 6, fill=COLOURS["query"], stroke=INK)
    d.text(26, 196, f"prediction ŷ = Σ α_i y_i = {prediction:.2f}", size=SMALL, anchor="start")
    base = 320
    d.line(left, base, right, base, colour=INK, width=1)
    d.text(8, 222, f"weights α_i: a kernel of width σ = {sigma:g} around the query", size=SMALL, anchor="start")
    top = max(ws)
    for x, w in zip(xs, ws):
        d.line(X(x), base, X(x), base - 80 * w / top, colour=COLOURS["weight"], width=2.5)
        d.rect(X(x) - 2, base - 2, 4, 4, fill=COLOURS["key"], stroke=COLOURS["key"], rx=0, stroke_width=1)
    d.text(X(query), 362, f"query x = {query:.2f}", size=SMALL)
    d.text(left, 362 if abs(X(query) - left) > 90 else 342, f"{lo:.1f}", size=SMALL)
    d.text(right, 362 if abs(X(query) - right) > 90 else 342, f"{hi:.1f}", size=SMALL, anchor="end")
    return d


def heads_concat(first_rows, n_q: int, d_model: int, d_head: int) -> Drawing:
    """Multi-head attention as the formulas say: each head projects to d_h features, attends with its own weights
    (the page's weights of query 0, one row per head), the head outputs are concatenated and mixed by W^(o).

    `first_rows`: one (n_k,) tensor per head; sizes from the page."""
    h = len(first_rows)
    n_k = len(first_rows[0])
    lane = min(150.0, 480 / h)
    d = Drawing(500, 372, "heads-concat")
    x0 = (500 - lane * h) / 2
    tallest = max(float(v) for row in first_rows for v in row)
    d.box(150, 8, 200, 40, "Q, K, V", note=f"n_q × d = {n_q} × {d_model}", size=SMALL)
    for r, row in enumerate(first_rows):
        cx = x0 + lane * (r + 0.5)
        d.arrow((250, 48), (cx, 74))
        d.box(cx - lane / 2 + 6, 76, lane - 12, 44, f"head {r}", role="query", note=f"d_h = {d_head}", size=SMALL)
        d.text(cx, 140, "query 0's weights", size=SMALL)
        bw = (lane - 20) / n_k
        for j, w in enumerate(float(v) for v in row):
            d.rect(
                cx - lane / 2 + 10 + j * bw,
                212 - 60 * w / tallest,
                bw - 2,
                60 * w / tallest,
                fill=tint(COLOURS["weight"], 0.55),
                stroke=COLOURS["weight"],
                rx=0,
                stroke_width=1,
            )
        d.line(cx - lane / 2 + 8, 212, cx + lane / 2 - 8, 212, colour=INK, width=1)
        d.arrow((cx, 216), (cx, 246))
    cw = min(lane, 360 / h)
    cx0 = 250 - cw * h / 2
    for r in range(h):
        d.rect(
            cx0 + r * cw,
            248,
            cw,
            34,
            fill=tint(COLOURS["value"], 0.2 + 0.25 * (r % 2)),
            stroke=COLOURS["value"],
            rx=0,
            stroke_width=1.5,
        )
        d.text(cx0 + (r + 0.5) * cw, 270, f"o_{r}", size=SMALL)
    d.text(250, 300, f"concatenated: n_q × h·d_h = {n_q} × {h * d_head}", size=SMALL)
    d.arrow((250, 306), (250, 322))
    d.box(130, 324, 240, 40, f"· W^{{(o)}} → {n_q} × {d_model}", size=SMALL)
    return d


def reversal(source, target) -> Drawing:
    """The capstone's task: each output position i copies the input at position n − 1 − i; the lines are what the
    attention of the trained model has to find. `source`, `target`: one example of the page's data."""
    xs, ys = [int(v) for v in source], [int(v) for v in target]
    n = len(xs)
    cell = min(48.0, 420 / n)
    x0 = (500 - cell * n) / 2 + 30
    d = Drawing(500, 214, "reversal")
    d.text(8, 44, "input", size=SMALL, anchor="start")
    d.text(8, 164, "target", size=SMALL, anchor="start")
    for i, (a, b) in enumerate(zip(xs, ys)):
        x = x0 + i * cell
        d.box(x + 3, 22, cell - 6, 34, str(a), role="value", size=SMALL)
        d.box(x + 3, 142, cell - 6, 34, str(b), role="query", size=SMALL)
        src = x0 + (n - 1 - i) * cell + cell / 2
        d.line(x + cell / 2, 141, src, 57, colour=COLOURS["weight"], width=1.5)
    d.text(250, 204, f"output i reads input {n} − 1 − i: one attention weight per row", size=SMALL)
    return d
