"""The Performance page shows figures measured on today's course: benchmarks/results.json (`make bench`) measured
the book that _toc.yml lists now and graded with the grader the course has now.

The page once rendered a book of 15 pages (it had 62) and grading figures from before the judge existed; each
test below fails on such a results file, and then the fix is to run `make bench` again.
"""

from __future__ import annotations

import json
import re

from helpers import ROOT

from attention_course.grading.options import GRADER_GENERATION
from attention_course.sphinx_fixes import toc_order

RESULTS = json.loads((ROOT / "benchmarks" / "results.json").read_text())
PAGE = (ROOT / "book" / "performance.md").read_text()


def test_the_measured_book_is_todays_book():
    assert "book" in RESULTS, "results.json has no book build: run `make bench` without --skip-book"
    pages = len(toc_order(ROOT / "_toc.yml"))
    assert RESULTS["book"]["pages"] == pages, (
        f"the Performance page shows a build of {RESULTS['book']['pages']} pages; _toc.yml lists {pages}: "
        "run `make bench`"
    )


def test_the_grading_figures_come_from_the_current_grader():
    assert "grading" in RESULTS, "results.json has no grading figures: run `make bench` without --skip-grading"
    assert RESULTS.get("grader", {}).get("version") == GRADER_GENERATION, (
        f"grading measured with grader version {RESULTS.get('grader', {}).get('version')}, the grader is version "
        f"{GRADER_GENERATION}: run `make bench`"
    )
    assignments = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    measured = [r["assignment"] for r in RESULTS["grading"]]  # every one, or those of --assignments
    assert measured and set(measured) <= set(assignments), measured
    for row in RESULTS["grading"]:
        assert row["make_grade_seconds_per_notebook"] > 0 and row["notebooks"] >= 1, row


def test_the_page_renders_these_results():
    """The page's stamps (which make the book re-execute it) name the runs it shows."""
    date = RESULTS["machine"]["date"]
    assert re.search(rf'^RESULTS_STAMP = "{re.escape(date)}"$', PAGE, re.M), f"RESULTS_STAMP != {date}"
    if "decode" in RESULTS:
        decode = RESULTS["decode"]["machine"]["date"]
        assert re.search(rf'^DECODE_STAMP = "{re.escape(decode)}"$', PAGE, re.M), decode
