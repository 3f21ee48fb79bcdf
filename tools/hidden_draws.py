"""Do the reference answers pass every test cell on every draw of hidden inputs?

Under `make grade` the judge re-keys `torch.manual_seed(s)` inside hidden blocks per student, submission and
cell (judge.py), so each student's hidden inputs are a different draw. A tolerance that a correct answer exceeds
on a rare draw costs a few students points they earned (SelfAttention's float32-vs-float64 comparison did, on
1.5% of draws). This runs each assignment's cells in order with the reference answers: visible parts with the
seeds they state, hidden parts with `manual_seed` re-keyed per draw, as the judge does.

    python -m tools.hidden_draws self-attention 300      # draws 0..299; prints the failing cells, exit 1 if any
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from pathlib import Path

import torch

from attention_course import notebooks as nbt

ROOT = Path(__file__).resolve().parent.parent


def failing_draws(assignment: str, draws: range) -> dict[str, list[tuple[int, str]]]:
    """test cell -> [(draw, error)] for every draw on which the reference fails it."""
    nb = nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    real = torch.manual_seed
    fails: dict[str, list[tuple[int, str]]] = {}
    try:
        for draw in draws:

            def keyed(seed, _draw=draw):
                return real(int.from_bytes(hashlib.sha256(f"{_draw}/{seed}".encode()).digest()[:6], "big"))

            real(draw)
            namespace: dict = {}
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                for cell in nb.cells:
                    if cell.cell_type != "code" or cell.source.lstrip().startswith(("%", "!")):
                        continue
                    name = nbt.nbgrader_meta(cell).get("grade_id") or "cell"
                    visible, _, hidden = cell.source.partition(nbt.HIDDEN_BEGIN)
                    try:
                        torch.manual_seed = real
                        exec(compile(visible, name, "exec"), namespace)
                        if hidden:
                            torch.manual_seed = keyed
                            exec(compile(hidden, name, "exec"), namespace)
                    except Exception as exc:
                        if nbt.is_test(cell):
                            fails.setdefault(name, []).append((draw, f"{type(exc).__name__}: {str(exc)[:300]}"))
    finally:
        torch.manual_seed = real
    return fails


def main(argv: list[str]) -> int:
    assignment, n = argv[0], int(argv[1]) if len(argv) > 1 else 100
    fails = failing_draws(assignment, range(n))
    for name, found in fails.items():
        print(f"{assignment} {name}: fails on {len(found)} of {n} draws, e.g. draw {found[0][0]}: {found[0][1]}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
