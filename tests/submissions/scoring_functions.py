"""Simulated submissions for the assignment scoring-functions.

The tests of DotProductAttention and AdditiveAttention run with a trusted masked softmax swapped in for the
student's (see the assignment's instructions), so a wrong masked_softmax loses points in Part 1 only.
"""

CORRECT = {
    # -inf fill (d2l uses -1e6), flattened rows with repeat_interleave, torch.where instead of masked_fill
    "masked_softmax": '''
def masked_softmax(scores, valid_lens):
    """masked softmax with -inf"""
    if valid_lens is None:
        return torch.nn.functional.softmax(scores, dim=2)
    B, n_q, n_k = scores.shape
    if valid_lens.dim() == 1:
        lens = torch.repeat_interleave(valid_lens, n_q)
    else:
        lens = valid_lens.reshape(-1)
    flat = scores.reshape(-1, n_k)
    keep = torch.arange(n_k)[None, :] < lens[:, None]
    flat = torch.where(keep, flat, torch.tensor(float("-inf")))
    return torch.nn.functional.softmax(flat, dim=-1).reshape(B, n_q, n_k)
''',
    # einsum instead of matmul, F.dropout with the module's training flag instead of nn.Dropout
    "DotProductAttention": '''
class DotProductAttention(nn.Module):
    """scaled dot product attention with einsum"""

    def __init__(self, dropout):
        super().__init__()
        self.p = dropout

    def forward(self, queries, keys, values, valid_lens=None):
        scores = torch.einsum("bqd,bkd->bqk", queries, keys) * queries.shape[-1] ** -0.5
        self.attention_weights = masked_softmax(scores, valid_lens)
        dropped = F.dropout(self.attention_weights, p=self.p, training=self.training)
        return torch.einsum("bqk,bkv->bqv", dropped, values)
''',
    # nn.Linear created on the first call (input sizes known only then) instead of nn.LazyLinear; a loop
    # over the queries instead of 4-D broadcasting; torch.bmm for the pooling
    "AdditiveAttention": '''
class AdditiveAttention(nn.Module):
    """additive attention with layers built lazily by hand"""

    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.W_q = self.W_k = self.w_v = None
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        if self.W_q is None:
            self.W_q = nn.Linear(queries.shape[-1], self.num_hiddens, bias=False)
            self.W_k = nn.Linear(keys.shape[-1], self.num_hiddens, bias=False)
            self.w_v = nn.Linear(self.num_hiddens, 1, bias=False)
        q, k = self.W_q(queries), self.W_k(keys)
        rows = [self.w_v(torch.tanh(q[:, i:i + 1, :] + k))[..., 0] for i in range(q.shape[1])]
        self.attention_weights = masked_softmax(torch.stack(rows, dim=1), valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
''',
}

_MS_ALL = ["masked_softmax_without_valid_lens", "masked_softmax_1d_valid_lens", "masked_softmax_2d_valid_lens"]
_MS_MASKED = ["masked_softmax_1d_valid_lens", "masked_softmax_2d_valid_lens"]

WRONG = {
    # ---- masked_softmax ----
    # Part 1 skipped: Parts 2 and 3 still earn full marks (their tests swap in a trusted masked softmax)
    "masked_softmax_not_attempted": (
        "masked_softmax",
        '''
def masked_softmax(scores, valid_lens):
    """later"""
    raise NotImplementedError("Not implemented yet")
''',
        _MS_ALL,
    ),
    "masked_softmax_off_by_one": (
        "masked_softmax",
        """
def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    B, n_q, n_k = scores.shape
    if valid_lens.dim() == 1:
        valid_lens = valid_lens[:, None].expand(B, n_q)
    keep = torch.arange(n_k) <= valid_lens[:, :, None]
    return torch.softmax(scores.masked_fill(~keep, -1e6), dim=-1)
""",
        _MS_MASKED,
    ),
    "masked_softmax_masks_queries": (
        "masked_softmax",
        """
def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    B, n_q, n_k = scores.shape
    if valid_lens.dim() == 1:
        valid_lens = valid_lens[:, None].expand(B, n_k)
    keep = torch.arange(n_q)[None, :, None] < valid_lens[:, None, :]
    return torch.softmax(scores.masked_fill(~keep, -1e6), dim=-1)
""",
        _MS_MASKED,
    ),
    "masked_softmax_over_queries": (
        "masked_softmax",
        """
def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=1)
    B, n_q, n_k = scores.shape
    if valid_lens.dim() == 1:
        valid_lens = valid_lens[:, None].expand(B, n_q)
    keep = torch.arange(n_k) < valid_lens[:, :, None]
    return torch.softmax(scores.masked_fill(~keep, -1e6), dim=1)
""",
        _MS_ALL,
    ),
    "masked_softmax_repeat_not_interleave": (
        "masked_softmax",
        """
def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    shape = scores.shape
    if valid_lens.dim() == 1:
        valid_lens = valid_lens.repeat(shape[1])
    else:
        valid_lens = valid_lens.reshape(-1)
    flat = scores.reshape(-1, shape[-1])
    keep = torch.arange(shape[-1])[None, :] < valid_lens[:, None]
    return torch.softmax(flat.masked_fill(~keep, -1e6), dim=-1).reshape(shape)
""",
        ["masked_softmax_1d_valid_lens"],
    ),
    "masked_softmax_fills_in_place": (
        "masked_softmax",
        """
def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    shape = scores.shape
    if valid_lens.dim() == 1:
        valid_lens = torch.repeat_interleave(valid_lens, shape[1])
    else:
        valid_lens = valid_lens.reshape(-1)
    flat = scores.reshape(-1, shape[-1])          # a view: the fill below writes into the caller's scores
    flat[~(torch.arange(shape[-1])[None, :] < valid_lens[:, None])] = -1e6
    return torch.softmax(flat.reshape(shape), dim=-1)
""",
        _MS_MASKED,
    ),
    "masked_softmax_1d_only": (
        "masked_softmax",
        """
def masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    keep = torch.arange(scores.shape[-1]) < valid_lens.reshape(-1, 1, 1)
    return torch.softmax(scores.masked_fill(~keep, -1e6), dim=-1)
""",
        ["masked_softmax_2d_valid_lens"],
    ),
    # ---- DotProductAttention ----
    "dot_product_scaled_by_d": (
        "DotProductAttention",
        """
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scores = queries @ keys.transpose(1, 2) / queries.shape[-1]
        self.attention_weights = masked_softmax(scores, valid_lens)
        return self.dropout(self.attention_weights) @ values
""",
        ["DotProductAttention_matches_formula"],
    ),
    "dot_product_not_scaled": (
        "DotProductAttention",
        """
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scores = torch.bmm(queries, keys.transpose(1, 2))
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
""",
        ["DotProductAttention_matches_formula"],
    ),
    "dot_product_scaled_by_value_size": (
        "DotProductAttention",
        """
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scores = queries @ keys.transpose(1, 2) / math.sqrt(values.shape[-1])
        self.attention_weights = masked_softmax(scores, valid_lens)
        return self.dropout(self.attention_weights) @ values
""",
        ["DotProductAttention_matches_formula"],
    ),
    "dot_product_ignores_valid_lens": (
        "DotProductAttention",
        """
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scores = queries @ keys.transpose(1, 2) / math.sqrt(queries.shape[-1])
        self.attention_weights = masked_softmax(scores, None)
        return self.dropout(self.attention_weights) @ values
""",
        ["DotProductAttention_matches_formula"],
    ),
    "dot_product_dropout_in_eval": (
        "DotProductAttention",
        """
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.p = dropout

    def forward(self, queries, keys, values, valid_lens=None):
        scores = queries @ keys.transpose(1, 2) / math.sqrt(queries.shape[-1])
        self.attention_weights = masked_softmax(scores, valid_lens)
        return F.dropout(self.attention_weights, self.p) @ values
""",
        ["DotProductAttention_dropout"],
    ),
    "dot_product_weights_after_dropout": (
        "DotProductAttention",
        """
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scores = queries @ keys.transpose(1, 2) / math.sqrt(queries.shape[-1])
        self.attention_weights = self.dropout(masked_softmax(scores, valid_lens))
        return self.attention_weights @ values
""",
        ["DotProductAttention_dropout"],
    ),
    "dot_product_dropout_on_output": (
        "DotProductAttention",
        """
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scores = queries @ keys.transpose(1, 2) / math.sqrt(queries.shape[-1])
        self.attention_weights = masked_softmax(scores, valid_lens)
        return self.dropout(self.attention_weights @ values)
""",
        ["DotProductAttention_dropout"],
    ),
    # ---- AdditiveAttention ----
    "additive_with_bias": (
        "AdditiveAttention",
        """
class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens)
        self.W_k = nn.LazyLinear(num_hiddens)
        self.w_v = nn.LazyLinear(1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        features = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))
        self.attention_weights = masked_softmax(self.w_v(features).squeeze(-1), valid_lens)
        return self.dropout(self.attention_weights) @ values
""",
        ["AdditiveAttention_layers", "AdditiveAttention_matches_formula"],
    ),
    "additive_without_tanh": (
        "AdditiveAttention",
        """
class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens, bias=False)
        self.W_k = nn.LazyLinear(num_hiddens, bias=False)
        self.w_v = nn.LazyLinear(1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        features = self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1)
        self.attention_weights = masked_softmax(self.w_v(features).squeeze(-1), valid_lens)
        return self.dropout(self.attention_weights) @ values
""",
        ["AdditiveAttention_matches_formula"],
    ),
    "additive_layers_swapped": (
        "AdditiveAttention",
        """
class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens, bias=False)
        self.W_k = nn.LazyLinear(num_hiddens, bias=False)
        self.w_v = nn.LazyLinear(1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        features = torch.tanh(self.W_k(queries).unsqueeze(2) + self.W_q(keys).unsqueeze(1))
        self.attention_weights = masked_softmax(self.w_v(features).squeeze(-1), valid_lens)
        return self.dropout(self.attention_weights) @ values
""",
        # the dropout test also compares with the formula on the test's own weights
        ["AdditiveAttention_layers", "AdditiveAttention_matches_formula", "AdditiveAttention_dropout"],
    ),
    "additive_ignores_valid_lens": (
        "AdditiveAttention",
        """
class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens, bias=False)
        self.W_k = nn.LazyLinear(num_hiddens, bias=False)
        self.w_v = nn.LazyLinear(1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        features = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))
        self.attention_weights = torch.softmax(self.w_v(features).squeeze(-1), dim=-1)
        return self.dropout(self.attention_weights) @ values
""",
        ["AdditiveAttention_matches_formula"],
    ),
    "additive_dropout_in_eval": (
        "AdditiveAttention",
        """
class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens, bias=False)
        self.W_k = nn.LazyLinear(num_hiddens, bias=False)
        self.w_v = nn.LazyLinear(1, bias=False)
        self.p = dropout

    def forward(self, queries, keys, values, valid_lens=None):
        features = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))
        self.attention_weights = masked_softmax(self.w_v(features).squeeze(-1), valid_lens)
        return F.dropout(self.attention_weights, self.p, training=True) @ values
""",
        ["AdditiveAttention_dropout"],
    ),
    "additive_weights_after_dropout": (
        "AdditiveAttention",
        """
class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens, bias=False)
        self.W_k = nn.LazyLinear(num_hiddens, bias=False)
        self.w_v = nn.LazyLinear(1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        features = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))
        scores = self.w_v(features).squeeze(-1)
        self.attention_weights = self.dropout(masked_softmax(scores, valid_lens))
        return self.attention_weights @ values
""",
        ["AdditiveAttention_dropout"],
    ),
}
