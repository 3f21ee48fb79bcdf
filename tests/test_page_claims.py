"""Every number a page states in prose, captions and alt texts is printed by the page or checked against its
output, or is whitelisted with a reason (tools/claims.py; the audit itself is docs/page-audit.md).

The first tests run the audit on small made-up pages (fast: they show what the method accepts and what it rejects);
the last ones run it on the built book (slow: they need every page executed).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from tools import claims

PAGE_HEAD = "---\nkernelspec:\n  name: python3\n---\n\n"


def make_book(tmp_path: Path, source: str, outputs: list[str], whitelist: dict | None = None) -> Path:
    """A one-page book whose executed notebook prints `outputs`."""
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/page\n")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "page.md").write_text(PAGE_HEAD + textwrap.dedent(source))
    (tmp_path / "solutions").mkdir()
    (tmp_path / "tools").mkdir()
    if whitelist is not None:
        (tmp_path / "tools" / "claims_whitelist.yml").write_text(yaml.safe_dump(whitelist))
    executed = tmp_path / "_build" / "jupyter_execute"
    executed.mkdir(parents=True)
    cells = [
        {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": out}]} for out in outputs
    ]
    (executed / "page.ipynb").write_text(json.dumps({"cells": cells}))
    return tmp_path


def evidence(root: Path) -> dict[str, str]:
    return {c.number: c.evidence for c in claims.audit(root)}


def test_a_rounded_printed_number_is_evidence_and_a_contradicted_one_is_not(tmp_path):
    root = make_book(
        tmp_path,
        """\
        Any score above about 88.7 overflows. The loss cannot go below 0.63.

        ```{code-cell} ipython3
        print(torch.log(torch.tensor(3.4028e38)).item(), loss)
        ```
        """,
        ["88.72283935546875 0.967\n"],
    )
    found = evidence(root)
    assert found["88.7"] == "output"
    assert found["0.63"] == "", "0.63 is printed nowhere: the audit must call it unexplained"


@pytest.mark.parametrize(
    ("prose", "printed", "explained"),
    [
        ("a weight of 0.12", "0.1192", True),
        ("a weight of 0.12", "0.1249", True),
        ("a weight of 0.12", "0.1251", False),
        ("3 heads", "3.4", False),  # a small integer matches only itself
        ("3 heads", "3", True),
        ("67% of the weight", "0.6652", True),
        ("67% of the weight", "0.6752", False),
        ("is $7.9 \\times 10^{-232}$", "7.9050e-232", True),
        ("is $7.9 \\times 10^{-232}$", "0.0", False),
        ("it grows to 2,114", "2114", True),
        ("about 500 steps", "487", True),
        ("500 steps", "487", False),
        ("1.07 MiB", "1.0742", True),
    ],
)
def test_matching_follows_the_precision_the_prose_writes(tmp_path, prose, printed, explained):
    root = make_book(tmp_path, f"It is {prose}.\n\n```{{code-cell}} ipython3\nprint(x)\n```\n", [printed + "\n"])
    result = [c for c in claims.audit(root) if c.number not in {"1"}]
    assert result, f"no number read in {prose!r}"
    assert bool(result[-1].evidence) is explained, (prose, printed, result[-1])


def test_captions_and_alt_texts_are_read_and_code_is_not(tmp_path):
    root = make_book(
        tmp_path,
        """\
        ```{code-cell} ipython3
        ---
        mystnb:
          image:
            alt: "A line that stays at 0.665 until c is 88."
          figure:
            caption: "Weights drop to 0.21."
        ---
        plot(x, 12345)
        ```
        """,
        ["0.665\n"],
    )
    found = {(c.kind, c.number): c.evidence for c in claims.audit(root)}
    assert found == {("alt", "0.665"): "output", ("alt", "88"): "", ("caption", "0.21"): ""}


def test_code_asserts_glue_and_structure(tmp_path):
    """A number an assert of the page checks is evidenced; glued values carry no digits; references, list item
    numbers, years and formula constants are not quantities."""
    root = make_book(
        tmp_path,
        """\
        The first weight is about 0.665 ({cite:p}`vaswani2017`, 2017); see chapter 4 and {glue:text}`loss:.2f`.

        1. Show that $1/(1-p)$ is the scale.

        ```{code-cell} ipython3
        :tags: [remove-cell]
        assert abs(first - 0.665) < 1e-3
        ```
        """,
        [""],
    )
    found = {c.number: (c.evidence, c.why) for c in claims.audit(root)}
    assert found["0.665"][0] == "assert"
    assert found["2017"][0] == "rule" and "year" in found["2017"][1]
    assert found["4"][0] == "rule" and "chapter" in found["4"][1]
    assert found["1"][0] == "rule"  # the list item and the formula's constants
    assert "loss" not in " ".join(found) and ".2" not in found


def test_progress_bars_on_stderr_are_no_evidence(tmp_path):
    root = make_book(tmp_path, "The loss reaches 0.63.\n\n```{code-cell} ipython3\nx\n```\n", [])
    nb_path = root / "_build" / "jupyter_execute" / "page.ipynb"
    stderr = {"output_type": "stream", "name": "stderr", "text": "63%|██████▎   | 0.63/1 [00:01<00:00]"}
    nb_path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": [stderr]}]}))
    assert evidence(root)["0.63"] == ""


def test_comparisons_are_listed_but_positional_words_are_not(tmp_path):
    root = make_book(
        tmp_path,
        """\
        As printed above, naive attention is far above blockwise attention, and its memory grows quadratically.
        """,
        [],
    )
    words = [word for _, _, word, _ in claims.comparisons(claims.parse_page(root / "book" / "page.md", root))]
    assert words == ["above", "quadratically"]


def test_a_whitelist_entry_needs_a_reason_and_matches_the_number_as_written(tmp_path):
    page = "In float16 the largest number is 65504, and 1.0 is not 1.\n\n```{code-cell} ipython3\nx\n```\n"
    root = make_book(tmp_path, page, [""], {"book/page": [{"number": 65504, "reason": "IEEE 754 half precision"}]})
    found = evidence(root)
    assert found["65504"] == "whitelist" and found["1.0"] == ""
    (root / "tools" / "claims_whitelist.yml").write_text(yaml.safe_dump({"book/page": [{"number": 65504}]}))
    with pytest.raises(AssertionError, match="reason"):
        claims.audit(root)


def test_a_whitelist_check_that_computes_another_number_fails(tmp_path):
    entry = {"number": "7.4", "reason": "e^2", "check": "math.exp(2)"}
    assert claims.check_whitelist({"book/page": [entry]}, tmp_path) == []
    wrong = {"book/page": [dict(entry, number="7.5")]}
    assert claims.check_whitelist(wrong, tmp_path) == ["book/page: 7.5 but math.exp(2) = 7.38905609893065"]


def test_every_checked_whitelist_entry_computes_its_number():
    """The whitelist's facts (a time limit, a count of attacks, float16's largest number) stay true."""
    assert claims.check_whitelist(claims.load_whitelist()) == []


# ------------------------------------------------------------------------------------------------ the real book


@pytest.fixture(scope="module")
def book_claims():
    from sitebuild import built_html

    built_html()  # every page executed (shared with test_book.py: one build per session)
    return claims.audit(ROOT)


@pytest.mark.slow
def test_every_page_has_its_executed_notebook(book_claims):
    with_code = [p for p in claims.toc_pages() if claims.parse_page(ROOT / f"{p}.md").code]
    assert with_code, "no page with code: is the table of contents read?"
    missing = [p for p in with_code if claims.executed_outputs(p) is None]
    assert not missing, f"no executed notebook for {missing}: the audit cannot see these pages' outputs"


@pytest.mark.slow
def test_every_number_on_every_page_is_printed_checked_or_explained(book_claims):
    bad = [c for c in book_claims if not c.evidence]
    assert not bad, "numbers that no output, assert or whitelist entry explains:\n" + "\n".join(
        f"{c.page}.md:{c.line} [{c.kind}] {c.number}: {c.sentence}" for c in bad
    )


@pytest.mark.slow
def test_every_whitelist_entry_is_still_needed(book_claims):
    """A stale entry would hide the next wrong number written beside it."""
    used = {(c.page, c.why) for c in book_claims if c.evidence == "whitelist"}
    whitelist = claims.load_whitelist()
    unused = [
        (page, e["number"])
        for page, entries in whitelist.items()
        for e in entries
        if page != "*" and (page, e["reason"]) not in used
    ]
    assert not unused, f"whitelist entries that explain nothing any more: {unused}"
