"""Simulated submissions for the assignment multi-head.

The wrong answers of `MultiHeadAttention` are variations of one plausible student class (`_STUDENT_MHA`, written
with `nn.Linear` and its own attention, not the reference) with a single mistake each, so that every mistake is
judged alone. The `*_not_done` entries prove self-containment: the reference class calls `transpose_qkv` and
`transpose_output` by name, and still earns its points when those two are missing, because the graded cells of
Part 3 run it with trusted copies of both.
"""

CORRECT = {
    # the heads as chunks of the features, stacked next to the batch dimension
    "transpose_qkv": '''
def transpose_qkv(X, num_heads):
    """chunk the features into heads"""
    heads = torch.stack(X.chunk(num_heads, dim=-1), dim=1)   # (B, h, n, d_h)
    return heads.flatten(0, 1)
''',
    # unbind the heads and concatenate them along the features
    "transpose_output": '''
def transpose_output(X, num_heads):
    """concatenate the heads"""
    per_batch = X.reshape(-1, num_heads, X.shape[1], X.shape[2])   # (B, h, n, d_h)
    return torch.cat(per_batch.unbind(dim=1), dim=-1)
''',
    # nn.Linear (not lazy), a loop over h separate head slices of the weights, einsum, a large negative fill,
    # no use of the transpose helpers at all
    "MultiHeadAttention": '''
class MultiHeadAttention(nn.Module):
    """h heads, each with its own slice of W_q, W_k, W_v"""
    def __init__(self, num_hiddens, num_heads, dropout, bias=False):
        super().__init__()
        self.h = num_heads
        self.W_q = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_k = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_v = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.drop = nn.Dropout(p=dropout)

    @staticmethod
    def _slice(layer, rows, x):
        b = None if layer.bias is None else layer.bias[rows]
        return nn.functional.linear(x, layer.weight[rows], b)

    def forward(self, queries, keys, values, valid_lens=None):
        d_h = queries.shape[-1] // self.h
        n_k = keys.shape[1]
        outputs = []
        for j in range(self.h):
            rows = slice(j * d_h, (j + 1) * d_h)
            q = self._slice(self.W_q, rows, queries)
            k = self._slice(self.W_k, rows, keys)
            v = self._slice(self.W_v, rows, values)
            s = torch.einsum("bqd,bkd->bqk", q, k) / d_h ** 0.5
            if valid_lens is not None:
                lens = valid_lens[:, None, None] if valid_lens.dim() == 1 else valid_lens[:, :, None]
                s = torch.where(torch.arange(n_k)[None, None, :] < lens, s, torch.full_like(s, -1e6))
            w = self.drop(torch.softmax(s, dim=2))
            outputs.append(torch.einsum("bqk,bkd->bqd", w, v))
        return self.W_o(torch.cat(outputs, dim=-1))
''',
}

# A plausible student class: the transpose helpers, matmul, its own masked softmax. Each WRONG entry changes
# one line of it.
_STUDENT_MHA = """
class MultiHeadAttention(nn.Module):
    def __init__(self, num_hiddens, num_heads, dropout, bias=False):
        super().__init__()
        self.num_heads = num_heads
        self.W_q = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_k = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_v = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        Q = transpose_qkv(self.W_q(queries), self.num_heads)
        K = transpose_qkv(self.W_k(keys), self.num_heads)
        V = transpose_qkv(self.W_v(values), self.num_heads)
        scores = Q @ K.transpose(1, 2) / math.sqrt(Q.shape[-1])
        if valid_lens is not None:
            lens = valid_lens.repeat_interleave(self.num_heads, dim=0)
            lens = lens[:, None] if lens.dim() == 1 else lens
            keep = torch.arange(K.shape[1])[None, None, :] < lens[:, :, None]
            scores = scores.masked_fill(~keep, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        out = self.attn_dropout(weights) @ V
        return self.W_o(transpose_output(out, self.num_heads))
"""


def _mha(*changes):
    """The student class with (old, new) line changes applied; each old text must occur exactly once."""
    source = _STUDENT_MHA
    for old, new in changes:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


_MHA_TESTS = ["MultiHeadAttention_matches_torch", "MultiHeadAttention_per_query_lens"]
_ALL_MHA_TESTS = ["MultiHeadAttention_shapes"] + _MHA_TESTS

WRONG = {
    # --- transpose_qkv ---
    "transpose_qkv_head_minor": (
        "transpose_qkv",
        """
def transpose_qkv(X, num_heads):
    B, n, _ = X.shape
    X = X.view(B, n, -1, num_heads)          # heads interleaved: head j gets features j, j+h, j+2h, ...
    return X.permute(0, 3, 1, 2).reshape(B * num_heads, n, -1)
""",
        ["transpose_qkv_head_major"],
    ),
    "transpose_qkv_heads_outermost": (
        "transpose_qkv",
        """
def transpose_qkv(X, num_heads):
    B, n, H = X.shape
    X = X.reshape(B, n, num_heads, H // num_heads).permute(2, 0, 1, 3)   # (h, B, n, d_h): batch-minor rows
    return X.reshape(num_heads * B, n, -1)
""",
        ["transpose_qkv_head_major"],
    ),
    "transpose_qkv_reshape_without_permute": (
        "transpose_qkv",
        """
def transpose_qkv(X, num_heads):
    B, n, H = X.shape
    return X.reshape(B * num_heads, n, H // num_heads)
""",
        ["transpose_qkv_head_major"],
    ),
    "transpose_qkv_view_after_permute": (
        "transpose_qkv",
        """
def transpose_qkv(X, num_heads):
    B, n, H = X.shape
    return X.view(B, n, num_heads, -1).transpose(1, 2).view(B * num_heads, n, -1)
""",
        ["transpose_qkv_head_major"],
    ),  # RuntimeError: view on a non-contiguous tensor
    "transpose_qkv_not_done": (
        "transpose_qkv",
        '''
def transpose_qkv(X, num_heads):
    """Split into heads."""
    raise NotImplementedError("Replace this line with your answer.")
''',
        ["transpose_qkv_head_major"],
    ),  # the reference class, which calls it, keeps its 7 points
    # --- transpose_output ---
    "transpose_output_without_permute": (
        "transpose_output",
        """
def transpose_output(X, num_heads):
    return X.reshape(X.shape[0] // num_heads, X.shape[1], -1)
""",
        ["transpose_output_inverts"],
    ),
    "transpose_output_interleaves_heads": (
        "transpose_output",
        """
def transpose_output(X, num_heads):
    BH, n, d_h = X.shape
    X = X.reshape(BH // num_heads, num_heads, n, d_h).permute(0, 2, 3, 1)   # (B, n, d_h, h)
    return X.reshape(BH // num_heads, n, -1)
""",
        ["transpose_output_inverts"],
    ),
    "transpose_output_heads_outermost": (
        "transpose_output",
        """
def transpose_output(X, num_heads):
    BH, n, d_h = X.shape
    X = X.reshape(num_heads, BH // num_heads, n, d_h).permute(1, 2, 0, 3)
    return X.reshape(BH // num_heads, n, num_heads * d_h)
""",
        ["transpose_output_inverts"],
    ),
    "transpose_output_not_done": (
        "transpose_output",
        '''
def transpose_output(X, num_heads):
    """Concatenate the heads."""
    raise NotImplementedError("Replace this line with your answer.")
''',
        ["transpose_output_inverts"],
    ),
    # --- MultiHeadAttention ---
    "mha_repeat_instead_of_repeat_interleave": (
        "MultiHeadAttention",
        _mha(
            (
                "lens = valid_lens.repeat_interleave(self.num_heads, dim=0)",
                "lens = valid_lens.repeat(self.num_heads) if valid_lens.dim() == 1 else valid_lens.repeat(self.num_heads, 1)",
            ),
        ),
        _MHA_TESTS,
    ),
    "mha_scales_by_num_hiddens": (
        "MultiHeadAttention",
        _mha(
            ("/ math.sqrt(Q.shape[-1])", "/ math.sqrt(queries.shape[-1])"),
        ),
        _MHA_TESTS,
    ),
    "mha_forgets_W_o": (
        "MultiHeadAttention",
        _mha(
            ("return self.W_o(transpose_output(out, self.num_heads))", "return transpose_output(out, self.num_heads)"),
        ),
        _MHA_TESTS,
    ),
    "mha_dropout_in_eval": (
        "MultiHeadAttention",
        _mha(
            ("self.attn_dropout(weights) @ V", "nn.functional.dropout(weights, self.attn_dropout.p) @ V"),
        ),
        ["MultiHeadAttention_matches_torch"],
    ),  # p = 0 in training is right; p > 0 in eval is not
    "mha_softmax_over_queries": (
        "MultiHeadAttention",
        _mha(
            ("torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=1)"),
        ),
        _MHA_TESTS,
    ),
    "mha_head_minor_inline": (
        "MultiHeadAttention",
        _mha(
            *[
                (
                    f"{big} = transpose_qkv(self.W_{small}({name}), self.num_heads)",
                    f"{big} = self.W_{small}({name}).reshape({name}.shape[0], {name}.shape[1], -1, self.num_heads)"
                    f".permute(0, 3, 1, 2).reshape(-1, {name}.shape[1], {name}.shape[2] // self.num_heads)",
                )
                for big, small, name in [("Q", "q", "queries"), ("K", "k", "keys"), ("V", "v", "values")]
            ],
        ),
        _MHA_TESTS,
    ),
    "mha_mask_off_by_one": (
        "MultiHeadAttention",
        _mha(
            ("< lens[:, :, None]", "<= lens[:, :, None]"),
        ),
        _MHA_TESTS,
    ),
    "mha_ignores_valid_lens": (
        "MultiHeadAttention",
        _mha(
            ("if valid_lens is not None:", "if False:"),
        ),
        _MHA_TESTS,
    ),
    "mha_valid_lens_1d_only": (
        "MultiHeadAttention",
        _mha(
            ("lens = lens[:, None] if lens.dim() == 1 else lens", "lens = lens[:, None]"),
        ),
        ["MultiHeadAttention_per_query_lens"],
    ),
    "mha_always_biased": (
        "MultiHeadAttention",
        _mha(
            *[
                (
                    f"self.W_{x} = nn.Linear(num_hiddens, num_hiddens, bias=bias)",
                    f"self.W_{x} = nn.Linear(num_hiddens, num_hiddens)",
                )
                for x in "qkvo"
            ],
        ),
        _ALL_MHA_TESTS,
    ),
    "mha_calls_sdpa": (
        "MultiHeadAttention",
        _mha(
            ("scores = Q @ K.transpose(1, 2) / math.sqrt(Q.shape[-1])", "mask = None"),
            ('scores = scores.masked_fill(~keep, float("-inf"))', "mask = keep"),
            (
                "weights = torch.softmax(scores, dim=-1)\n        out = self.attn_dropout(weights) @ V",
                "out = nn.functional.scaled_dot_product_attention(Q, K, V, attn_mask=mask)",
            ),
        ),
        _ALL_MHA_TESTS,
    ),
    "mha_wraps_torch_module": (
        "MultiHeadAttention",
        """
class MultiHeadAttention(nn.Module):
    def __init__(self, num_hiddens, num_heads, dropout, bias=False):
        super().__init__()
        self.mha = nn.MultiheadAttention(num_hiddens, num_heads, dropout=dropout, bias=bias, batch_first=True)
        self.W_q = self.W_k = self.W_v = self.W_o = self.mha.out_proj

    def forward(self, queries, keys, values, valid_lens=None):
        mask = None if valid_lens is None else torch.arange(keys.shape[1])[None, :] >= valid_lens.reshape(len(keys), -1)[:, :1]
        return self.mha(queries, keys, values, key_padding_mask=mask)[0]
""",
        _ALL_MHA_TESTS,
    ),
}

# Mistakes that Validate (the visible tests) lets through on purpose; tests/test_visible_tests.py checks this set.
HIDDEN_ONLY = {
    # right values (PyTorch's own kernel): only the graded, instrumented test (forbid) sees the forbidden call
    "mha_calls_sdpa",
}
