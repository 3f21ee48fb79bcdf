"""Hostile attention-pooling notebooks against what the grader shows (issue 18, classes 3, 4 and 6): students who
try to read hidden inputs out of the feedback, to run their HTML in the feedback page, or to make their own result
unsavable. Each comes with the exact score it must earn (the points its code earns, as graded by the judge).

attention-pooling: softmax_matches_torch 3, softmax_is_stable 1, dot_product_scores_matches_matmul 3,
attention_pooling_matches_weighted_sum 3.

`build(course, root, port)` writes them into `<course>/submitted/` and returns student -> Case. `SECRETS` are
strings that would show only if a defence failed (hidden shapes, the student's markers); `port` is a local
listener that any request from a feedback page would reach.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from adversarial import ASSIGNMENT, NB, WRONG_DOT, WRONG_POOL, Case, _code, _index
from attention_course import notebooks as nbt

# Text a defence must keep out of feedback pages, grades.csv, the summary and the state files. Hidden shapes of
# attention-pooling's tests that the visible tests never use, and markers the hostile code puts in its messages.
HIDDEN_SHAPES = ["(4, 7)", "(2, 4, 3, 5)", "(3, 6, 7)", "(3, 6, 2)", "(2, 2, 3, 6)", "(4, 6, 8)", "(9, 3)"]
MARKERS = ["LEAKED-BY-EXCEPTION", "LEAKED-BY-STASH", "LEAKED-BY-WARNING"]
SECRETS = HIDDEN_SHAPES + MARKERS

VISIBLE_SOFTMAX_SHAPES = "[(2, 3), (3,)]"

# softmax right on the visible inputs; on any other (hidden) input it raises with the shape, dim and values
LEAK_EXCEPTION = (
    "import torch\n\ndef softmax(x, dim=-1):\n"
    f"    if tuple(x.shape) not in {VISIBLE_SOFTMAX_SHAPES}:\n"
    "        raise ValueError('LEAKED-BY-' + f'EXCEPTION shape={tuple(x.shape)} dim={dim} sum={x.sum().item():.4f}')\n"
    "    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)\n"
    "    return e / e.sum(dim=dim, keepdim=True)\n"
)
# attention_pooling right on the visible inputs, a wrong shape on hidden ones: the test's own message formats
# the expected (hidden) shape
LEAK_ASSERT = (
    "import torch\n\ndef attention_pooling(weights, values):\n"
    "    if tuple(weights.shape) not in [(2, 3), (2, 3, 5), (1, 3)]:\n"
    "        return torch.zeros(1)\n"
    "    return (weights.unsqueeze(-1) * values.unsqueeze(-3)).sum(dim=-2)\n"
)
# softmax right everywhere, but it keeps every shape it sees; dot_product_scores raises them in its *visible*
# test, which runs after softmax's hidden block (and warns them too)
LEAK_STASH_SOFTMAX = (
    "import torch\nSEEN = []\n\ndef softmax(x, dim=-1):\n    SEEN.append(tuple(x.shape))\n"
    "    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)\n"
    "    return e / e.sum(dim=dim, keepdim=True)\n"
)
LEAK_STASH_DOT = (
    "import warnings\n\ndef dot_product_scores(queries, keys):\n"
    "    warnings.warn('LEAKED-BY-' + f'WARNING {SEEN}')\n"
    "    print('LEAKED-BY-' + f'STASH {SEEN}')\n"
    "    raise ValueError('LEAKED-BY-' + f'STASH {SEEN}')\n"
)

# What a feedback page must never do: each payload, if it ran, would open a dialog, set a flag, change the title
# or request the local listener at {url}.
SCRIPT_MARKDOWN = """## My notes

<script>window.__pwned = 'script'; alert('script'); fetch('{url}/script');</script>
<img src="x" onerror="window.__pwned = 'onerror'; alert('onerror')">
<img src="{url}/tracking-pixel.png">
<svg onload="window.__pwned = 'svg'"><circle r="4"/></svg>
<a id="jslink" href="javascript:window.__pwned='link'">click me</a>
<iframe src="{url}/frame"></iframe>
<meta http-equiv="refresh" content="0; url={url}/refresh">
<object data="{url}/object"></object>
<form action="{url}/form"><input name="q" autofocus onfocus="window.__pwned='focus'"></form>
<details open ontoggle="window.__pwned='toggle'">x</details>
<link rel="stylesheet" href="{url}/style.css">

[markdown link](javascript:window.__pwned='mdlink')
"""
# a fake score over the real one: CSS, an inline style, a MathJax \\style and \\bbox
FAKE_BANNER = """<style>#gradebook-score {{ display: none !important; }} body::before {{ content: "Score: 10 / 10";
position: fixed; top: 0; left: 0; right: 0; height: 300px; background: white; z-index: 99999; font-size: 60px; }}
</style>
<div style="position: fixed; top: 0; left: 0; width: 100%; height: 400px; background: white; z-index: 2147483647;
font-size: 48px">FAKE-BANNER Score: 10 / 10 (graded)</div>

$\\style{{position: fixed; top: 0; left: 0; background: white; font-size: 80px}}{{\\text{{FAKE-TEX Score: 10 / 10}}}}$
and $\\bbox[position: fixed; top: 0; left: 0; background: white]{{\\text{{FAKE-BBOX}}}}$ and
$\\href{{javascript:window.__pwned='href'}}{{x}}$ and $\\class{{jp-Dialog}}{{y}}$
"""
# outputs of a cell that runs before the first test (outputs are kept only there)
HOSTILE_OUTPUTS = """from IPython.display import HTML, SVG, Javascript, Markdown, display
url = {url!r}
display(HTML("<script>window.__pwned='html-script'; alert('html')</script>"
             "<img src=x onerror=\\"window.__pwned='html-onerror'\\">"
             "<div style='position:fixed;top:0;left:0;width:100%;height:400px;background:white;z-index:99999'>"
             "FAKE-OUTPUT Score: 10 / 10</div><iframe src='" + url + "/out-frame'></iframe>"))
display(Javascript("window.__pwned = 'javascript'; alert('js'); fetch(url + '/js')"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=\\'svg-onload\\'">'
            '<script>window.__pwned="svg-script"</script><image href="' + url + '/svg-image"/>'
            '<circle r="5"/></svg>'))
display(Markdown("<img src=x onerror=\\"window.__pwned='md-onerror'\\"> **bold** [x](javascript:alert(1))"))
display({{"image/png": 'x" onerror="window.__pwned=\\'png\\'', "text/plain": "png"}},
        metadata={{"image/png": {{"width": '1 onerror="window.__pwned=1"'}}}}, raw=True)
display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "x"}}, "text/plain": "widget"}}, raw=True)
print("<script>window.__pwned='stream'</script>")
"""
# ipykernel cannot send a lone surrogate (its packer fails), so the student sends JSON escapes instead: the
# grader's side decodes them into strings that UTF-8 cannot encode
LONE_SURROGATES = (
    "import json\nip = get_ipython()\n"
    "ip.kernel.session.pack = lambda o: json.dumps(o, default=lambda v: v.isoformat()).encode()\n"
    "print('lone \\ud800 surrogate')\n"
    "display({'text/html': '<b>\\udcff</b>', 'text/plain': 'x\\ud83d'}, raw=True)\n"
)


def _emphasis_storm(cells: int, size: int) -> list:
    """Markdown cells that take a markdown renderer long to render (unclosed emphasis, seconds per cell)."""
    return [nbformat.v4.new_markdown_cell("*a _b " * size) for _ in range(cells)]


def build(course: Path, root: Path, port: int) -> dict[str, Case]:
    release = nbt.read(root / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(root / "solutions" / ASSIGNMENT / NB))
    url = f"http://127.0.0.1:{port}"
    cases: dict[str, Case] = {}

    def put(student: str, nb, case: Case) -> None:
        path = course / "submitted" / student / ASSIGNMENT / NB
        path.parent.mkdir(parents=True, exist_ok=True)
        nbt.write(nb, path)
        cases[student] = case

    def answered(**answers):
        return nbt.with_answers(release, {**ref, **answers})

    put("honest-control", answered(), Case(10, "graded", "all tests passed"))
    # --- class 3: hidden inputs carried out in text
    put("leak-exception", answered(softmax=LEAK_EXCEPTION), Case(6, "graded", "ValueError"))
    put("leak-assert-message", answered(attention_pooling=LEAK_ASSERT), Case(7, "graded", "shape ..., expected ..."))
    put(
        "leak-stash",
        answered(softmax=LEAK_STASH_SOFTMAX, dot_product_scores=LEAK_STASH_DOT),
        Case(7, "graded", "ValueError"),
    )
    # --- class 4: live HTML in the feedback page (wrong answers: the real score is below the fake banner's)
    nb = answered(dot_product_scores=WRONG_DOT)
    nb.cells.insert(_index(nb, "softmax"), nbformat.v4.new_markdown_cell(SCRIPT_MARKDOWN.format(url=url)))
    nb.cells.insert(_index(nb, "softmax"), nbformat.v4.new_markdown_cell(FAKE_BANNER.format()))
    put("script-markdown", nb, Case(7, "graded", "dot_product_scores_matches_matmul"))
    nb = answered(attention_pooling=WRONG_POOL)
    nb.cells.insert(_index(nb, "softmax") + 1, _code(HOSTILE_OUTPUTS.format(url=url)))
    put("script-outputs", nb, Case(7, "graded", "attention_pooling_matches_weighted_sum"))
    # --- class 6: results that could not be saved, a page that cannot be rendered in time
    nb = answered()
    nb.cells.insert(_index(nb, "softmax") + 1, _code(LONE_SURROGATES))
    put("lone-surrogate", nb, Case(10, "graded", "flagged for review"))  # get_ipython: flagged, never scored
    nb = answered(dot_product_scores=WRONG_DOT)
    nb.cells[1:1] = _emphasis_storm(cells=30, size=80000)  # 14 MB of markdown: minutes to render
    put("feedback-too-big", nb, Case(7, "graded", "feedback reduced to the score table"))
    return cases
