"""`make similarity`: a simulated class of scoring-functions (no kernels) with two planted near-copies (renamed
variables, reordered statements) of an unusual answer, five honest students who wrote the obvious answer each in
their own words, and two others. The copies must rank first; the honest students must not, although they are
alike (shown by turning off the common-code filter)."""

from __future__ import annotations

import shutil

from helpers import ROOT

from attention_course import notebooks as nbt
from attention_course.grading import similarity
from attention_course.grading.course import Course

A = "scoring-functions"

OBVIOUS_SOFTMAX = """def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    {B}, {nq}, {nk} = scores.shape
    if valid_lens.dim() == 1:
        valid_lens = {expand}
    {mask} = torch.arange({nk}, device=scores.device)[None, None, :] < valid_lens[:, :, None]
    {masked} = scores.masked_fill(~{mask}, {fill})
    return torch.softmax({masked}, dim=-1)
"""
OBVIOUS_DOT = """class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        {d} = queries.shape[-1]
        {s} = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt({d})
        self.attention_weights = masked_softmax({s}, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
"""
OBVIOUS_ADD = """class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_k = nn.LazyLinear(num_hiddens, bias=False)
        self.W_q = nn.LazyLinear(num_hiddens, bias=False)
        self.w_v = nn.LazyLinear(1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        queries, keys = self.W_q(queries), self.W_k(keys)
        {f} = queries.unsqueeze(2) + keys.unsqueeze(1)
        {f} = torch.tanh({f})
        {s} = self.w_v({f}).squeeze(-1)
        self.attention_weights = masked_softmax({s}, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
"""
HONEST = {
    "honest1": dict(B="B", nq="n_q", nk="n_k", expand="valid_lens[:, None].expand(B, n_q)", mask="mask",
                    masked="scores", fill="-1e6", d="d", s="scores", f="features"),
    "honest2": dict(B="b", nq="q", nk="k", expand="valid_lens.unsqueeze(1).expand(-1, q)", mask="keep",
                    masked="x", fill="float('-inf')", d="dim", s="logits", f="h"),
    "honest3": dict(B="batch", nq="nq", nk="nk", expand="valid_lens[:, None].expand(batch, nq)", mask="m",
                    masked="masked", fill="-1e6", d="depth", s="att", f="hidden"),
    "honest4": dict(B="B", nq="Q", nk="K", expand="valid_lens.reshape(-1, 1).expand(B, Q)", mask="valid",
                    masked="s", fill="-1e9", d="d_k", s="sc", f="feat"),
    "honest5": dict(B="n", nq="rows", nk="cols", expand="valid_lens[:, None].expand(n, rows)", mask="ok",
                    masked="scores", fill="-10**6", d="d", s="scores", f="features"),
}  # fmt: skip

COPY_A = {
    "masked_softmax": """def masked_softmax(scores, valid_lens):
    result = torch.zeros_like(scores)
    if valid_lens is None:
        valid_lens = torch.full(scores.shape[:1], scores.shape[-1])
    note = "<script>alert('copied')</script>"
    for b in range(scores.shape[0]):
        lengths = valid_lens[b]
        for q in range(scores.shape[1]):
            n = int(lengths[q]) if lengths.dim() > 0 else int(lengths)
            row = scores[b, q, :n]
            row = row - row.max()
            e = row.exp()
            result[b, q, :n] = e / e.sum()
    return result
""",
    "DotProductAttention": """class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.drop = nn.Dropout(p=dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scale = queries.size(-1) ** -0.5
        logits = torch.einsum("bqd,bkd->bqk", queries * scale, keys)
        weights = masked_softmax(logits, valid_lens)
        self.attention_weights = weights
        mixed = torch.einsum("bqk,bkv->bqv", self.drop(weights), values)
        return mixed
""",
    "AdditiveAttention": """class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.proj_q = nn.LazyLinear(num_hiddens, bias=False)
        self.proj_k = nn.LazyLinear(num_hiddens, bias=False)
        self.score = nn.LazyLinear(1, bias=False)
        self.drop = nn.Dropout(p=dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        pq = self.proj_q(queries)[:, :, None, :]
        pk = self.proj_k(keys)[:, None, :, :]
        energy = self.score(torch.tanh(pq + pk))[..., 0]
        self.attention_weights = masked_softmax(energy, valid_lens)
        return torch.einsum("bqk,bkv->bqv", self.drop(self.attention_weights), values)
""",
}
# the near-copy: every name changed, independent statements reordered, comments added
COPY_B = {
    "masked_softmax": """def masked_softmax(scores, valid_lens):
    if valid_lens is None:  # no mask given
        valid_lens = torch.full(scores.shape[:1], scores.shape[-1])
    output = torch.zeros_like(scores)
    msg = "<script>alert('copied')</script>"
    for i in range(scores.shape[0]):
        ls = valid_lens[i]
        for j in range(scores.shape[1]):
            cnt = int(ls[j]) if ls.dim() > 0 else int(ls)
            r = scores[i, j, :cnt]
            r = r - r.max()  # stability
            ex = r.exp()
            output[i, j, :cnt] = ex / ex.sum()
    return output
""",
    "DotProductAttention": """class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dr = nn.Dropout(p=dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        factor = queries.size(-1) ** -0.5
        raw = torch.einsum("bqd,bkd->bqk", queries * factor, keys)
        w = masked_softmax(raw, valid_lens)
        self.attention_weights = w
        out = torch.einsum("bqk,bkv->bqv", self.dr(w), values)
        return out
""",
    "AdditiveAttention": """class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.d = nn.Dropout(p=dropout)
        self.lin_k = nn.LazyLinear(num_hiddens, bias=False)
        self.lin_q = nn.LazyLinear(num_hiddens, bias=False)
        self.v = nn.LazyLinear(1, bias=False)

    def forward(self, queries, keys, values, valid_lens=None):
        kk = self.lin_k(keys)[:, None, :, :]
        qq = self.lin_q(queries)[:, :, None, :]
        e = self.v(torch.tanh(qq + kk))[..., 0]
        self.attention_weights = masked_softmax(e, valid_lens)
        return torch.einsum("bqk,bkv->bqv", self.d(self.attention_weights), values)
""",
}
OTHERS = {
    "other1": {
        "masked_softmax": """def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return F.softmax(scores, -1)
    positions = torch.arange(scores.shape[-1])
    limit = valid_lens.view(scores.shape[0], -1, 1)
    weights = torch.where(positions < limit, scores.exp(), torch.zeros(()))
    return weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
""",
    },
    "other2": {
        "DotProductAttention": """class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        nn.Module.__init__(self)
        self.p = dropout

    def forward(self, queries, keys, values, valid_lens=None):
        sims = queries @ keys.mT
        sims = sims.div(queries.shape[2] ** 0.5)
        self.attention_weights = masked_softmax(sims, valid_lens)
        dropped = F.dropout(self.attention_weights, self.p, self.training)
        return dropped @ values
""",
    },
}


def make_class(tmp_path) -> Course:
    root = tmp_path / "course"
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder / A, root / folder / A)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    release = nbt.read(ROOT / "exercises" / A / f"{A}.ipynb")
    students = {s: {} for s in HONEST}
    for student, names in HONEST.items():
        students[student] = {
            "masked_softmax": OBVIOUS_SOFTMAX.format(**names),
            "DotProductAttention": OBVIOUS_DOT.format(**names),
            "AdditiveAttention": OBVIOUS_ADD.format(**names),
        }
    students |= {"copy-a": COPY_A, "copy-b": COPY_B, **OTHERS}
    for student, answers in students.items():
        nbt.write(nbt.with_answers(release, answers), root / "submitted" / student / A / f"{A}.ipynb")
    return Course.load(root)


def test_near_copies_rank_first_and_the_obvious_answer_does_not(tmp_path):
    course = make_class(tmp_path)
    before = sorted(p.relative_to(course.root) for p in course.root.rglob("*"))
    dest, pairs = similarity.report(course, A)
    after = sorted(p.relative_to(course.root) for p in course.root.rglob("*"))
    assert sorted(set(after) - set(before)) == [dest.parent.relative_to(course.root), dest.relative_to(course.root)]
    assert not (course.root / "gradebook.db").exists()  # nothing read or written about scores

    top = pairs[0]
    assert {top.a, top.b} == {"copy-a", "copy-b"}, [(p.a, p.b, round(p.score, 2)) for p in pairs[:5]]
    honest = [p for p in pairs if p.a.startswith("honest") and p.b.startswith("honest")]
    assert len(honest) == 10 and max(p.score for p in honest) < top.score / 2, [
        (p.a, p.b, round(p.score, 2)) for p in pairs[:8]
    ]
    # the honest students are alike: without the common-code filter they would score as high as the copies
    unfiltered = similarity.compare(
        [
            similarity.Submission(s, lines, similarity.fingerprints(similarity.tokens("\n".join(lines))))
            for s in ("honest1", "honest3", "copy-a", "copy-b")
            for lines in [similarity.student_code(course, A, s, similarity.template_lines(course, A))]
        ],
        max_share=99,
    )
    scores = {frozenset((p.a, p.b)): p.score for p in unfiltered}
    assert scores[frozenset(("honest1", "honest3"))] >= 0.8 * scores[frozenset(("copy-a", "copy-b"))]

    page = dest.read_text()
    assert "copy-a" in page and "copy-b" in page and "<script" not in page  # student code escaped
    assert "&lt;script&gt;" in page  # the matching lines, side by side
    assert "for b in range(scores.shape[0]):" in page and "for i in range(scores.shape[0]):" in page


def test_the_released_template_and_provided_code_are_not_compared(tmp_path):
    course = make_class(tmp_path)
    template = similarity.template_lines(course, A)
    lines = similarity.student_code(course, A, "copy-a", template)
    text = "\n".join(lines)
    assert "def masked_softmax(scores, valid_lens):" not in text  # the given signature
    assert "raise NotImplementedError" not in text
    assert "result = torch.zeros_like(scores)" in text
    # a blank submission (the released notebook as is) has nothing to compare
    nbt.write(nbt.read(ROOT / "exercises" / A / f"{A}.ipynb"), course.submitted / "blank" / A / f"{A}.ipynb")
    assert not "".join(similarity.student_code(course, A, "blank", template)).strip()
    # renaming and comments change no token
    assert similarity.tokens("y = f(x)  # hi\n") == similarity.tokens("out = f(inp)\n")
    assert [t for t, _ in similarity.tokens("a.sum(dim=-1)")] == ["V", ".", "sum", "(", "V", "=", "-", "N", ")"]


def test_the_command(tmp_path):
    import subprocess
    import sys

    course = make_class(tmp_path)
    cmd = [sys.executable, "-m", "attention_course.grading", "--course", str(course.root), "similarity"]
    proc = subprocess.run([*cmd, A, "--top", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[1:3] == ["copy-a", "copy-b"] and len(lines) == 4
    assert lines[-1].endswith("36 pair(s), the 3 most similar with their matching lines")
    proc = subprocess.run([*cmd, "no-such"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown assignment 'no-such'")
