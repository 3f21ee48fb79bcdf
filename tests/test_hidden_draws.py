"""The reference answers pass every test cell on every draw of hidden inputs (tools/hidden_draws.py): under
`make grade` each student gets other hidden inputs, and a correct answer must earn every point on each."""

from __future__ import annotations

import pytest
from helpers import ASSIGNMENTS

from tools.hidden_draws import failing_draws

DRAWS = range(1000, 1040)  # 40 draws per assignment here; `python -m tools.hidden_draws NAME 300` for more


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_reference_passes_on_every_draw(assignment):
    fails = failing_draws(assignment, DRAWS)
    assert not fails, {name: found[:2] for name, found in fails.items()}


def test_a_tolerance_too_tight_for_some_draws_is_found(tmp_path, monkeypatch):
    """The method finds what it is for: the old SelfAttention tolerance fails on some of 200 draws."""
    import tools.hidden_draws as hd

    source = (hd.ROOT / "solutions" / "self-attention" / "self-attention.ipynb").read_text()
    tight = source.replace("rtol=1e-3, atol=1e-4", "rtol=1e-4, atol=1e-5")
    assert tight != source
    (tmp_path / "solutions" / "self-attention").mkdir(parents=True)
    (tmp_path / "solutions" / "self-attention" / "self-attention.ipynb").write_text(tight)
    monkeypatch.setattr(hd, "ROOT", tmp_path)
    assert "SelfAttention_matches_formula" in failing_draws("self-attention", range(113, 114))
