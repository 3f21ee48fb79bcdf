"""Simulated submissions for the assignment masking.

WRONG entries whose list of losing cells is empty are not mistakes: they are further correct variants (or a
Part 1 mistake that must not cost points in Part 2) and must earn full marks.
"""

CORRECT = {
    # torch.tril of a boolean matrix of ones
    "causal_mask": '''
def causal_mask(num_steps):
    """lower triangle, diagonal included"""
    return torch.tril(torch.ones(num_steps, num_steps, dtype=torch.bool))
''',
    # mask built on the fly from aranges, einsum for the scores, a large negative fill, F.dropout with the flag
    "CausalSelfAttention": '''
class CausalSelfAttention(nn.Module):
    """causal self-attention, mask built in forward"""
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.context_length = context_length
        self.p = dropout

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        s = torch.einsum("bid,bjd->bij", q, k) * q.shape[-1] ** -0.5
        pos = torch.arange(n, device=x.device)
        allowed = pos[None, :] <= pos[:, None]
        s = torch.where(allowed, s, torch.full_like(s, -1e9))
        w = torch.softmax(s, dim=2)
        w = F.dropout(w, p=self.p, training=self.training)
        return torch.einsum("bij,bjd->bid", w, v)
''',
}

_CSA_HEAD = '''
class CausalSelfAttention(nn.Module):
    """variant"""
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))
'''


def _csa(forward: str, head: str = _CSA_HEAD) -> str:
    """A CausalSelfAttention with Raschka's float buffer (1 above the diagonal) and the given forward."""
    return head + forward


_FORWARD_OK = """
    def forward(self, x):
        b, n, d_in = x.shape
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = q @ k.transpose(1, 2)
        scores.masked_fill_(self.mask.bool()[:n, :n], -torch.inf)
        w = torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)
        return self.dropout(w) @ v
"""

_FORWARD_ALL = [
    "CausalSelfAttention_matches_sdpa",
    "CausalSelfAttention_shorter_sequences",
    "CausalSelfAttention_dropout_only_in_training",
]

WRONG = {
    # ---- causal_mask
    "causal_mask_diagonal_masked": (
        "causal_mask",
        """
def causal_mask(num_steps):
    return ~torch.triu(torch.ones(num_steps, num_steps, dtype=torch.bool), diagonal=0)
""",
        ["causal_mask_values"],
    ),
    "causal_mask_true_means_masked": (
        "causal_mask",
        """
def causal_mask(num_steps):
    return torch.triu(torch.ones(num_steps, num_steps, dtype=torch.bool), diagonal=1)
""",
        ["causal_mask_values"],
    ),
    "causal_mask_upper_triangle": (
        "causal_mask",
        """
def causal_mask(num_steps):
    return torch.triu(torch.ones(num_steps, num_steps)).bool()
""",
        ["causal_mask_values"],
    ),
    "causal_mask_float": (
        "causal_mask",
        """
def causal_mask(num_steps):
    return torch.tril(torch.ones(num_steps, num_steps))
""",
        ["causal_mask_is_bool"],
    ),
    "causal_mask_additive_float": (
        "causal_mask",
        """
def causal_mask(num_steps):
    return torch.triu(torch.full((num_steps, num_steps), float("-inf")), diagonal=1)
""",
        ["causal_mask_values", "causal_mask_is_bool"],
    ),
    "causal_mask_fixed_size": (
        "causal_mask",
        """
_MASK = torch.tril(torch.ones(16, 16, dtype=torch.bool))
def causal_mask(num_steps):
    return _MASK[:num_steps, :num_steps] if num_steps <= 8 else _MASK
""",
        ["causal_mask_values", "causal_mask_is_bool"],
    ),
    # ---- CausalSelfAttention: correct variants (must earn full marks)
    "ok_raschka_float_buffer": ("CausalSelfAttention", _csa(_FORWARD_OK), []),
    "ok_mask_from_tril_aranges_matmul_minus_inf": (
        "CausalSelfAttention",
        '''
class CausalSelfAttention(nn.Module):
    """registered bool buffer made with tril; -inf fill; nn.Dropout"""
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("allowed", torch.tril(torch.ones(context_length, context_length)) == 1)

    def forward(self, x):
        n = x.size(-2)
        q = self.W_query(x)
        k = self.W_key(x)
        v = self.W_value(x)
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1))
        s = s.masked_fill(~self.allowed[:n, :n], float("-inf"))
        return torch.matmul(self.drop(s.softmax(dim=-1)), v)
''',
        [],
    ),
    # Part 1's mistake must not cost points in Part 2: this answer cell redefines causal_mask wrongly (after
    # Part 1 is graded) and calls it; the graded tests put a known-good causal_mask in its place.
    "ok_calls_a_wrong_causal_mask": (
        "CausalSelfAttention",
        '''
def causal_mask(num_steps):
    return torch.triu(torch.ones(num_steps, num_steps, dtype=torch.bool))

class CausalSelfAttention(nn.Module):
    """uses Part 1's causal_mask although told not to"""
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        n = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])
        scores = scores.masked_fill(~causal_mask(n), float("-inf"))
        return self.dropout(torch.softmax(scores, dim=-1)) @ v
''',
        [],
    ),
    # ---- CausalSelfAttention: mistakes
    "csa_diagonal_masked": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("self.mask.bool()[:n, :n]", "torch.triu(torch.ones(n, n), diagonal=0).bool()")),
        _FORWARD_ALL,
    ),
    "csa_mask_true_means_attend": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("self.mask.bool()[:n, :n]", "~self.mask.bool()[:n, :n]")),
        _FORWARD_ALL,
    ),
    "csa_mask_transposed": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("self.mask.bool()[:n, :n]", "self.mask.bool()[:n, :n].T")),
        _FORWARD_ALL,
    ),
    "csa_mask_not_sliced": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("self.mask.bool()[:n, :n]", "self.mask.bool()")),
        ["CausalSelfAttention_shorter_sequences"],
    ),
    "csa_mask_after_softmax": (
        "CausalSelfAttention",
        _csa("""
    def forward(self, x):
        n = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        w = torch.softmax(q @ k.transpose(1, 2) / k.shape[-1] ** 0.5, dim=-1)
        w = w.masked_fill(self.mask.bool()[:n, :n], 0.0)
        return self.dropout(w) @ v
"""),
        _FORWARD_ALL,
    ),
    "csa_scaled_by_d_in": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("k.shape[-1] ** 0.5", "d_in ** 0.5")),
        _FORWARD_ALL,
    ),
    "csa_not_scaled": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("scores / k.shape[-1] ** 0.5", "scores")),
        _FORWARD_ALL,
    ),
    "csa_scaled_by_d": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("k.shape[-1] ** 0.5", "k.shape[-1]")),
        _FORWARD_ALL,
    ),
    "csa_dropout_on_in_eval": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK.replace("self.dropout(w) @ v", "F.dropout(w, p=self.dropout.p) @ v")),
        ["CausalSelfAttention_dropout_only_in_training"],
    ),
    "csa_softmax_over_queries": ("CausalSelfAttention", _csa(_FORWARD_OK.replace("dim=-1", "dim=1")), _FORWARD_ALL),
    "csa_keys_dot_T": ("CausalSelfAttention", _csa(_FORWARD_OK.replace("k.transpose(1, 2)", "k.T")), _FORWARD_ALL),
    "csa_calls_sdpa": (
        "CausalSelfAttention",
        _csa("""
    def forward(self, x):
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        p = self.dropout.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
"""),
        _FORWARD_ALL,
    ),
    "csa_layers_in_another_order": (
        "CausalSelfAttention",
        _csa(
            _FORWARD_OK,
            head=_CSA_HEAD.replace(
                "        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)\n        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)\n",
                "        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)\n        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)\n",
            ),
        ),
        ["CausalSelfAttention_layers"],
    ),
    "csa_bias_always_on": (
        "CausalSelfAttention",
        _csa(_FORWARD_OK, head=_CSA_HEAD.replace("bias=qkv_bias)", "bias=True)")),
        # its stray biases (left as initialised) move every output the tests compute from their own weights
        [
            "CausalSelfAttention_layers",
            "CausalSelfAttention_matches_sdpa",
            "CausalSelfAttention_shorter_sequences",
            "CausalSelfAttention_dropout_only_in_training",
        ],
    ),
    "csa_modifies_input": (
        "CausalSelfAttention",
        _csa("""
    def forward(self, x):
        n = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        x.zero_()
        scores = q @ k.transpose(1, 2) / k.shape[-1] ** 0.5
        scores = scores.masked_fill(self.mask.bool()[:n, :n], -torch.inf)
        return self.dropout(torch.softmax(scores, dim=-1)) @ v
"""),
        # every test that calls it sees the input changed (the judge fails such a call; in-kernel tests compare)
        [
            "CausalSelfAttention_matches_sdpa",
            "CausalSelfAttention_shorter_sequences",
            "CausalSelfAttention_dropout_only_in_training",
        ],
    ),
}

# Mistakes that Validate (the visible tests) lets through on purpose; tests/test_visible_tests.py checks this set.
HIDDEN_ONLY = {
    # right values (PyTorch's own kernel): only the graded, instrumented test (forbid) sees the forbidden call
    "csa_calls_sdpa",
}
# Right answers that fail Validate because another part of the notebook is wrong: they earn their points only
# because the graded cells put trusted copies of the other parts in place (self-containment).
NEEDS_TRUSTED_PARTS = {"ok_calls_a_wrong_causal_mask"}
