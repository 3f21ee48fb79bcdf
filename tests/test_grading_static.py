"""The grader's static tamper check flags no honest answer: every reference answer and every simulated
submission (correct and wrong) of every assignment passes it, and the known tampering routes are flagged."""

from __future__ import annotations

import pytest
from conftest import ASSIGNMENTS, ROOT
from submissions import for_assignment

from attention_course import notebooks as nbt
from attention_course.grading.static_scan import tamper_findings


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_honest_answers_are_not_flagged(assignment):
    source = nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    module = for_assignment(assignment)
    answers = [(f"reference {g}", a) for g, a in nbt.reference_answers(source).items()]
    answers += [(f"CORRECT {g}", a) for g, a in module.CORRECT.items()]
    answers += [(f"WRONG {name}", src) for name, (_, src, _) in module.WRONG.items()]
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    answers += [
        (f"exercise cell {c.get('id')}", c.source)
        for c in release.cells
        if c.cell_type == "code" and not nbt.is_test(c) and not nbt.nbgrader_meta(c).get("locked")
    ]  # locked cells: the source's
    flagged = {where: tamper_findings(code, where) for where, code in answers}
    assert not {k: v for k, v in flagged.items() if v}


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.testing.assert_close = lambda *a, **k: None",
        "from torch import testing\ntesting.assert_close = print",
        "import numpy.testing as npt\nnpt.assert_allclose = print",
        "x = torch.testing\nx.assert_close = print",
        "torch.Tensor.__eq__ = lambda a, b: True",
        "get_ipython().events.register('pre_run_cell', f)",
        "setattr(getattr(__import__('torch'), 'testing'), 'assert_close', print)",
        "t = torch.testing\nsetattr(t, 'assert_close', print)",
        "setattr(torch, 'allclose', lambda *a: True)",
        "exec('torch.equal = lambda a, b: True')",
        "import builtins\nbuiltins.AssertionError = Warning",
        "vars(torch.testing)['assert_close'] = print",
        "sys.modules['torch'].testing.assert_close = print",
        "object.__setattr__(torch.testing, 'assert_close', print)",
        "%load_ext evil",
        "!curl http://example.com",
    ],
)
def test_tampering_is_flagged(code):
    assert tamper_findings(code, "cell")
