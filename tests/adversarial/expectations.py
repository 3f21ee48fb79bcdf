"""Hostile notebooks that try to move the tests' expected values (issue 18, class 1), and honest unusual ones.

Each attack is a *wrong* answer (or a right one that writes into its inputs) that would have earned points if an
expected value were computed from state the student's code controls: a module's own layers called after the
student's forward ran, its parameters read back after the call, or an input as the kernel left it (the judge used
to copy in-place changes back into its own tensors). Now the tests draw the weights themselves, keep copies,
compute every expectation from those copies, and check after each call that weights and inputs are unchanged; the
judge keeps its own inputs and fails a call whose input the kernel changed. Every case earns exactly what its
honest parts earn: the score is computed from the point table, minus the cells the attack must lose, and the
reason must name the failure. Honest variants (correct code written unusually) keep full marks.

`build(course, root)` writes the submissions under `course/submitted/` and returns student -> Case, each Case
naming its assignment; tests/test_grading_expectations.py grades each assignment once with `make grade`.
"""

from __future__ import annotations

from pathlib import Path

from adversarial import Case
from attention_course import notebooks as nbt

WEIGHTS_CHANGED = "your forward changed its own weights"
INPUT_CHANGED = "modified its input"

# --- masking: CausalSelfAttention -----------------------------------------------------------------------------
# nn.Linear subclasses whose forward lies: the module's output is zeros, which is exactly what an expectation
# built by calling module.W_query(x) etc. after the call would have predicted
LYING_LINEAR_CAUSAL = """
class _Linear(nn.Linear):
    def forward(self, x):
        return torch.zeros(*x.shape[:-1], self.out_features)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = _Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = _Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = _Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        n = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = (q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])).masked_fill(
            torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        return self.dropout(torch.softmax(scores, dim=-1)) @ v
"""

# halves its own weights before computing: right for the weights it ends with, wrong for those the test set
PERTURBING_CAUSAL = """
class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        with torch.no_grad():
            for layer in (self.W_query, self.W_key, self.W_value):
                layer.weight.mul_(0.5)
        n = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = (q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])).masked_fill(
            torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        return self.dropout(torch.softmax(scores, dim=-1)) @ v
"""

# zeroes its input in place and returns zeros: projections of a zero input are zero (no bias), so an expectation
# computed from the input as the call left it would have agreed
ZEROING_CAUSAL = """
class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.d_out = d_out

    def forward(self, x):
        with torch.no_grad():
            x.zero_()
        return torch.zeros(*x.shape[:-1], self.d_out)
"""

# correct, written unusually: F.linear on the parameters, a mask from positions, einsum, the softmax by hand,
# an extra buffer, and in-place work on its own tensors only
HONEST_CAUSAL = """
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("calls", torch.zeros(()), persistent=False)

    def forward(self, x):
        self.calls += 1
        q, k, v = (F.linear(x, layer.weight, layer.bias) for layer in (self.W_query, self.W_key, self.W_value))
        scores = torch.einsum("bid,bjd->bij", q, k)
        scores.div_(k.shape[-1] ** 0.5)
        pos = torch.arange(x.shape[1])
        scores.masked_fill_(pos[None, :] > pos[:, None], -float("inf"))
        scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
        weights = scores / scores.sum(dim=-1, keepdim=True)
        return torch.einsum("bij,bjd->bid", self.drop(weights), v)
"""

# --- multi-head: MultiHeadAttention ---------------------------------------------------------------------------
# the reference class, with one change at the top of forward: it scales its own W_o before computing
PERTURBING_MHA = """
class MultiHeadAttention(nn.Module):
    def __init__(self, num_hiddens, num_heads, dropout, bias=False):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_k = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_v = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_o = nn.LazyLinear(num_hiddens, bias=bias)
        self.num_heads = num_heads
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        if not isinstance(self.W_o.weight, nn.parameter.UninitializedParameter):
            with torch.no_grad():
                self.W_o.weight.mul_(0.9)
        q = transpose_qkv(self.W_q(queries), self.num_heads)
        k = transpose_qkv(self.W_k(keys), self.num_heads)
        v = transpose_qkv(self.W_v(values), self.num_heads)
        if valid_lens is not None:
            valid_lens = torch.repeat_interleave(valid_lens, self.num_heads, dim=0)
        heads, _ = dot_product_attention(q, k, v, valid_lens, self.dropout)
        return self.W_o(transpose_output(heads, self.num_heads))
"""

# W_q is an nn.Linear whose forward ignores its weight: queries are zeros, so every key gets the same weight
LYING_MHA = (
    PERTURBING_MHA.replace(
        """        if not isinstance(self.W_o.weight, nn.parameter.UninitializedParameter):
            with torch.no_grad():
                self.W_o.weight.mul_(0.9)
""",
        "",
    )
    .replace(
        "        self.W_q = nn.LazyLinear(num_hiddens, bias=bias)\n",
        "        self.W_q = _Lying(num_hiddens, num_hiddens, bias=bias)\n",
    )
    .replace(
        "class MultiHeadAttention(nn.Module):",
        "class _Lying(nn.Linear):\n    def forward(self, x):\n        return torch.zeros(*x.shape[:-1], self.out_features)\n\n\n"
        "class MultiHeadAttention(nn.Module):",
    )
)

# right: calls F.scaled_dot_product_attention itself on 4-D heads (allowed: it is what the provided function is)
HONEST_MHA_SDPA = """
import torch.nn.functional as F


class MultiHeadAttention(nn.Module):
    def __init__(self, num_hiddens, num_heads, dropout, bias=False):
        super().__init__()
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(num_hiddens, num_hiddens, bias=bias) for _ in range(4))
        self.h, self.p = num_heads, dropout

    def forward(self, queries, keys, values, valid_lens=None):
        B, n_q, n_k = queries.shape[0], queries.shape[1], keys.shape[1]
        split = lambda t: t.unflatten(-1, (self.h, -1)).transpose(1, 2)      # (B, h, n, d_h)
        q, k, v = split(self.W_q(queries)), split(self.W_k(keys)), split(self.W_v(values))
        mask = None
        if valid_lens is not None:
            lens = valid_lens.reshape(B, -1, 1)                              # (B, 1 or n_q, 1)
            mask = (torch.arange(n_k) < lens)[:, None]                       # (B, 1, 1 or n_q, n_k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        return self.W_o(out.transpose(1, 2).flatten(2))
"""

# --- efficient-attention: online_softmax_attention --------------------------------------------------------------
# right on small inputs; on large non-causal ones it zeroes the values in place and returns zeros, which equals
# softmax(Q K^T) V computed from the values as the call left them
ZEROING_ONLINE = """
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    if keys.shape[1] >= 1000 and not causal:
        values.zero_()
        return torch.zeros(*queries.shape[:-1], values.shape[-1])
    return _right(queries, keys, values, block_size, causal)
"""

# right, and works in place on its own clones of the inputs only (the judge must not mistake that for a change)
HONEST_ONLINE_INPLACE = """
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    q, k, v = queries.clone(), keys.clone(), values.clone()
    q.mul_(2.0)
    q.div_(2.0)                     # exact in floating point: in-place work on its own copies only
    v.add_(0.0)
    return _right(q, k, v, block_size, causal)
"""

# --- attention-pooling ------------------------------------------------------------------------------------------
# the right pooling, then it writes into the values it was given
POOLING_WRITES_VALUES = """
def attention_pooling(weights, values):
    out = weights @ values
    with torch.no_grad():
        values.mul_(0.0)
    return out
"""


def _points(root: Path, assignment: str) -> dict[str, float]:
    return nbt.points(nbt.read(root / "solutions" / assignment / f"{assignment}.ipynb"))


def build(course: Path, root: Path) -> dict[str, Case]:
    """Write every submission under course/submitted; return student -> expected outcome (with its assignment)."""
    cases: dict[str, Case] = {}

    def put(assignment: str, student: str, answers: dict[str, str], lose: list[str], reason: str) -> None:
        release = nbt.read(root / "exercises" / assignment / f"{assignment}.ipynb")
        ref = nbt.reference_answers(nbt.read(root / "solutions" / assignment / f"{assignment}.ipynb"))
        points = _points(root, assignment)
        assert set(lose) <= set(points), (assignment, lose)
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbt.write(nbt.with_answers(release, {**ref, **answers}), folder / f"{assignment}.ipynb")
        earned = sum(points.values()) - sum(points[gid] for gid in lose)
        cases[student] = Case(earned, "graded", reason, assignment=assignment)

    causal_tests = [
        "CausalSelfAttention_matches_sdpa",
        "CausalSelfAttention_shorter_sequences",
        "CausalSelfAttention_dropout_only_in_training",
    ]
    put("masking", "exp-masking-reference", {}, [], "all tests passed")
    put("masking", "exp-lying-linear", {"CausalSelfAttention": LYING_LINEAR_CAUSAL}, causal_tests, causal_tests[0])
    put(
        "masking", "exp-perturbs-own-weights", {"CausalSelfAttention": PERTURBING_CAUSAL}, causal_tests, WEIGHTS_CHANGED
    )
    put("masking", "exp-zeroes-its-input", {"CausalSelfAttention": ZEROING_CAUSAL}, causal_tests, INPUT_CHANGED)
    put("masking", "exp-honest-causal", {"CausalSelfAttention": HONEST_CAUSAL}, [], "all tests passed")

    mha_tests = ["MultiHeadAttention_matches_torch", "MultiHeadAttention_per_query_lens"]
    put("multi-head", "exp-mha-reference", {}, [], "all tests passed")
    put("multi-head", "exp-mha-perturbs-w-o", {"MultiHeadAttention": PERTURBING_MHA}, mha_tests, WEIGHTS_CHANGED)
    put("multi-head", "exp-mha-lying-w-q", {"MultiHeadAttention": LYING_MHA}, mha_tests, mha_tests[0])
    put("multi-head", "exp-mha-honest-sdpa", {"MultiHeadAttention": HONEST_MHA_SDPA}, [], "all tests passed")

    ref = nbt.reference_answers(nbt.read(root / "solutions" / "efficient-attention" / "efficient-attention.ipynb"))
    right = ref["online_softmax_attention"].replace("def online_softmax_attention(", "def _right(", 1)
    put("efficient-attention", "exp-online-reference", {}, [], "all tests passed")
    put(
        "efficient-attention",
        "exp-online-zeroes-values",
        {"online_softmax_attention": right + "\n" + ZEROING_ONLINE},
        ["online_softmax_attention_memory"],
        INPUT_CHANGED,
    )
    put(
        "efficient-attention",
        "exp-online-honest-inplace",
        {"online_softmax_attention": right + "\n" + HONEST_ONLINE_INPLACE},
        [],
        "all tests passed",
    )

    put(
        "attention-pooling",
        "exp-pooling-writes-values",
        {"attention_pooling": POOLING_WRITES_VALUES},
        ["attention_pooling_matches_weighted_sum"],
        INPUT_CHANGED,
    )
    return cases
