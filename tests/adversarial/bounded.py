"""Hostile students against the trusted side's own resources (issue 18, class 5), on self-attention (10 points:
SelfAttention_layers 1, SelfAttention_matches_formula 3, positional_encoding_matches_formula 3,
PositionalEncoding_adds_P 2, PositionalEncoding_dropout 1). The two PositionalEncoding tests replace
`positional_encoding` with a trusted stand-in that runs in the judge, so there the kernel chooses what the judge
computes.

- `huge-request`: its PositionalEncoding asks the stand-in for a table of max_len * 10**5 rows (gigabytes in the
  judge if it were computed): the stand-in refuses, those two tests fail (7/10) and the judge goes on.
- `ipc-fill`: writes 48 MiB into the kernel's IPC folder (`../ipc`, where the judge's socket lives); its
  `positional_encoding` is right only if that write failed (the folder is a 16 MiB tmpfs): 10/10.
- `judge-killer`: calls the stand-in with the string that, under ATTENTION_COURSE_TEST_JUDGE_DEATH (set by the
  test only), kills the judge's process as an OOM killer would: a grader error for that student alone (retried on
  the next run); every classmate graded fully.
"""

from __future__ import annotations

from pathlib import Path

from attention_course import notebooks as nbt

ASSIGNMENT = "self-attention"
NB = f"{ASSIGNMENT}.ipynb"
DEATH_MARKER = "bounded-test-judge-death"
HONEST = ("honest-a", "honest-b", "honest-c")

HUGE_REQUEST = """class PositionalEncoding(nn.Module):
    def __init__(self, num_hiddens, dropout, max_len=1000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        # from the grader's stand-in (it runs in the judge) a table of max_len * 10**5 rows; max_len are used
        judged = getattr(positional_encoding, "__name__", "").startswith("grader_stand_in")
        table = positional_encoding(max_len * 10**5 if judged else max_len, num_hiddens)
        self.register_buffer("P", table[:max_len], persistent=False)

    def forward(self, X):
        return self.dropout(X + self.P[: X.shape[-2], :].to(X.dtype))
"""

JUDGE_KILLER = (
    """class PositionalEncoding(nn.Module):
    def __init__(self, num_hiddens, dropout, max_len=1000):
        super().__init__()
        try:
            positional_encoding(%r, num_hiddens)
        except Exception:
            pass
        self.dropout = nn.Dropout(p=dropout)
        self.register_buffer("P", positional_encoding(max_len, num_hiddens), persistent=False)

    def forward(self, X):
        return self.dropout(X + self.P[: X.shape[-2], :].to(X.dtype))
"""
    % DEATH_MARKER
)

IPC_FILL = """def _filled(where):
    try:
        for i in range(6):  # 6 x 8 MiB: more than the 16 MiB of the IPC folder
            with open(f"{where}/big{i}", "wb") as fh:
                fh.write(b"z" * (8 * 2**20))
        return True
    except OSError:
        return False
if _filled("../ipc"):
    def positional_encoding(num_steps, num_hiddens):
        return torch.zeros(num_steps, num_hiddens)
else:
%s
"""


def build(course: Path, root: Path) -> dict[str, float | None]:
    """Write the class under course/submitted; student -> the score it must get (None: a grader error)."""
    release = nbt.read(root / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(root / "solutions" / ASSIGNMENT / NB))

    def put(student: str, answers: dict) -> None:
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        nbt.write(nbt.with_answers(release, {**ref, **answers}), folder / NB)

    indented = "\n".join("    " + line for line in ref["positional_encoding"].splitlines())
    for student in HONEST:
        put(student, {})
    put("huge-request", {"PositionalEncoding": HUGE_REQUEST})
    put("ipc-fill", {"positional_encoding": IPC_FILL % indented})
    put("judge-killer", {"PositionalEncoding": JUDGE_KILLER})
    return {**dict.fromkeys(HONEST, 10.0), "huge-request": 7.0, "ipc-fill": 10.0, "judge-killer": None}
