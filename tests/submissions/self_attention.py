"""Simulated submissions for the assignment self-attention."""

CORRECT = {
    # layers made in a loop (same creation order), einsum scores, a hand-written stable softmax
    "SelfAttention": '''
class SelfAttention(nn.Module):
    """einsum version"""
    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        for name in ("W_query", "W_key", "W_value"):
            setattr(self, name, nn.Linear(d_in, d_out, bias=qkv_bias))
        self.d_out = d_out

    def forward(self, x):
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        s = torch.einsum("...id,...jd->...ij", q, k) / self.d_out ** 0.5
        e = torch.exp(s - s.max(dim=-1, keepdim=True).values)
        return torch.einsum("...ij,...jd->...id", e / e.sum(dim=-1, keepdim=True), v)
''',
    # exp-log formula, in float64 then cast
    "positional_encoding": '''
def positional_encoding(num_steps, num_hiddens):
    """exp-log version"""
    pos = torch.arange(num_steps, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, num_hiddens, 2, dtype=torch.float64) * (-math.log(10000.0) / num_hiddens))
    P = torch.zeros(num_steps, num_hiddens, dtype=torch.float64)
    P[:, 0::2] = torch.sin(pos * div)
    P[:, 1::2] = torch.cos(pos * div)
    return P.float()
''',
    # computes P itself (d2l's layout: a (1, max_len, d) tensor), does not call positional_encoding
    "PositionalEncoding": '''
class PositionalEncoding(nn.Module):
    """d2l-style"""
    def __init__(self, num_hiddens, dropout, max_len=1000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.P = torch.zeros((1, max_len, num_hiddens))
        X = torch.arange(max_len, dtype=torch.float32).reshape(-1, 1) / torch.pow(
            10000, torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens)
        self.P[:, :, 0::2] = torch.sin(X)
        self.P[:, :, 1::2] = torch.cos(X)

    def forward(self, X):
        return self.dropout(X + self.P[:, :X.shape[1], :])
''',
}

_SA = '''
class SelfAttention(nn.Module):
    """variant"""
    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        {init}

    def forward(self, x):
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        {forward}
'''
_INIT = """self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)"""
_FORWARD = """scores = queries @ keys.transpose(-2, -1)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values"""


def _sa(init=_INIT, forward=_FORWARD):
    return _sa_template(init, forward)


def _sa_template(init, forward):
    return _SA.replace("{init}", init).replace("{forward}", forward)


_PE = '''
def positional_encoding(num_steps, num_hiddens):
    """variant"""
    P = torch.zeros(num_steps, num_hiddens)
    for i in range(num_steps):
        for col in range(num_hiddens):
            {body}
    return P
'''


def _pe(body):
    return _PE.replace("{body}", body)


_CLASS = '''
class PositionalEncoding(nn.Module):
    """variant"""
    def __init__(self, num_hiddens, dropout, max_len=1000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.P = positional_encoding(max_len, num_hiddens)

    def forward(self, X):
        {forward}
'''


def _cls(forward):
    return _CLASS.replace("{forward}", forward)


WRONG = {
    # --- correct variants written differently: they must lose nothing ---
    "ok_SelfAttention_explicit_loops": (
        "SelfAttention",
        _sa(
            forward="""outs = []
        for seq_q, seq_k, seq_v in zip(queries.reshape(-1, *queries.shape[-2:]), keys.reshape(-1, *keys.shape[-2:]),
                                       values.reshape(-1, *values.shape[-2:])):
            rows = []
            for q in seq_q:
                w = torch.softmax(torch.stack([q @ k for k in seq_k]) / math.sqrt(seq_k.shape[-1]), dim=0)
                rows.append(sum(wj * vj for wj, vj in zip(w, seq_v)))
            outs.append(torch.stack(rows))
        return torch.stack(outs).reshape(*queries.shape)"""
        ),
        [],
    ),
    "ok_SelfAttention_sdpa": (
        "SelfAttention",
        _sa(forward="return torch.nn.functional.scaled_dot_product_attention(queries, keys, values)"),
        [],
    ),
    "ok_positional_encoding_loops": (
        "positional_encoding",
        _pe(
            """j = col // 2
            angle = i / 10000 ** (2 * j / num_hiddens)
            P[i, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)"""
        ),
        [],
    ),
    "ok_PositionalEncoding_calls_part2_in_forward": (
        "PositionalEncoding",
        '''
class PositionalEncoding(nn.Module):
    """computes P lazily"""
    def __init__(self, num_hiddens, dropout, max_len=1000):
        super().__init__()
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.drop = nn.Dropout(dropout)

    def forward(self, X):
        assert X.shape[1] <= self.max_len
        return self.drop(X + positional_encoding(X.shape[1], self.num_hiddens).unsqueeze(0))
''',
        [],
    ),
    # --- SelfAttention ---
    "SelfAttention_scaled_by_d_in": (
        "SelfAttention",
        _sa(
            forward="""scores = queries @ keys.transpose(-2, -1)
        weights = torch.softmax(scores / self.W_query.in_features ** 0.5, dim=-1)
        return weights @ values"""
        ),
        ["SelfAttention_matches_formula"],
    ),
    "SelfAttention_not_scaled": (
        "SelfAttention",
        _sa(
            forward="""scores = queries @ keys.transpose(-2, -1)
        return torch.softmax(scores, dim=-1) @ values"""
        ),
        ["SelfAttention_matches_formula"],
    ),
    "SelfAttention_scaled_by_d_out_not_sqrt": (
        "SelfAttention",
        _sa(
            forward="""scores = queries @ keys.transpose(-2, -1)
        return torch.softmax(scores / keys.shape[-1], dim=-1) @ values"""
        ),
        ["SelfAttention_matches_formula"],
    ),
    "SelfAttention_softmax_over_queries": (
        "SelfAttention",
        _sa(
            forward="""scores = queries @ keys.transpose(-2, -1)
        return torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-2) @ values"""
        ),
        ["SelfAttention_matches_formula"],
    ),
    "SelfAttention_softmax_dim0_2d_only": (
        "SelfAttention",
        _sa(
            forward="""scores = queries @ keys.transpose(-2, -1)
        return torch.softmax(scores / keys.shape[-1] ** 0.5, dim=0) @ values"""
        ),
        ["SelfAttention_matches_formula"],
    ),
    "SelfAttention_dot_T_on_batches": (
        "SelfAttention",
        _sa(
            forward="""scores = queries @ keys.T
        return torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1) @ values"""
        ),
        ["SelfAttention_matches_formula"],
    ),
    "SelfAttention_keys_first": (
        "SelfAttention",
        _sa(
            forward="""scores = keys @ queries.transpose(-2, -1)
        return torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1) @ values"""
        ),
        ["SelfAttention_matches_formula"],
    ),
    "SelfAttention_layers_in_another_order": (
        "SelfAttention",
        _sa(
            init="""self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)"""
        ),
        ["SelfAttention_layers"],
    ),
    "SelfAttention_always_bias": (
        "SelfAttention",
        _sa(
            init="""self.W_query = nn.Linear(d_in, d_out)
        self.W_key = nn.Linear(d_in, d_out)
        self.W_value = nn.Linear(d_in, d_out)"""
        ),
        ["SelfAttention_layers", "SelfAttention_matches_formula"],
    ),  # random biases change the outputs too
    "SelfAttention_parameters_not_linear": (
        "SelfAttention",
        _sa(
            init="""self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))"""
        ).replace(
            "self.W_query(x), self.W_key(x), self.W_value(x)", "x @ self.W_query, x @ self.W_key, x @ self.W_value"
        ),
        ["SelfAttention_layers", "SelfAttention_matches_formula"],
    ),
    # --- positional_encoding ---
    "positional_encoding_sin_cos_swapped": (
        "positional_encoding",
        _pe(
            """angle = i / 10000 ** (2 * (col // 2) / num_hiddens)
            P[i, col] = math.cos(angle) if col % 2 == 0 else math.sin(angle)"""
        ),
        ["positional_encoding_matches_formula"],
    ),
    "positional_encoding_column_index_exponent": (
        "positional_encoding",
        _pe(
            """angle = i / 10000 ** (col / num_hiddens)
            P[i, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)"""
        ),
        ["positional_encoding_matches_formula"],
    ),
    "positional_encoding_pair_index_without_2": (
        "positional_encoding",
        _pe(
            """angle = i / 10000 ** ((col // 2) / num_hiddens)
            P[i, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)"""
        ),
        ["positional_encoding_matches_formula"],
    ),
    "positional_encoding_position_in_exponent": (
        "positional_encoding",
        _pe(
            """angle = i / 10000 ** (2 * i / num_hiddens)
            P[i, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)"""
        ),
        ["positional_encoding_matches_formula"],
    ),
    "positional_encoding_sin_then_cos_halves": (
        "positional_encoding",
        """
def positional_encoding(num_steps, num_hiddens):
    pos = torch.arange(num_steps, dtype=torch.float32)[:, None]
    angle = pos / 10000 ** (torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens)
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
""",
        ["positional_encoding_matches_formula"],
    ),
    "positional_encoding_positions_from_1": (
        "positional_encoding",
        """
def positional_encoding(num_steps, num_hiddens):
    pos = torch.arange(1, num_steps + 1, dtype=torch.float32)[:, None]
    angle = pos / 10000 ** (torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens)
    P = torch.zeros(num_steps, num_hiddens)
    P[:, 0::2], P[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return P
""",
        ["positional_encoding_matches_formula"],
    ),
    # --- PositionalEncoding ---
    "PositionalEncoding_dropout_on_in_eval": (
        "PositionalEncoding",
        _cls("return torch.nn.functional.dropout(X + self.P[:X.shape[1]], self.dropout.p)"),
        ["PositionalEncoding_adds_P"],
    ),
    "PositionalEncoding_P_not_sliced": (
        "PositionalEncoding",
        _cls("return self.dropout(X + self.P)"),
        ["PositionalEncoding_adds_P", "PositionalEncoding_dropout"],
    ),
    "PositionalEncoding_dropout_on_P_only": (
        "PositionalEncoding",
        _cls("return X + self.dropout(self.P[:X.shape[1]])"),
        ["PositionalEncoding_dropout"],
    ),
    "PositionalEncoding_no_dropout": (
        "PositionalEncoding",
        _cls("return X + self.P[:X.shape[1]]"),
        ["PositionalEncoding_dropout"],
    ),
    "PositionalEncoding_in_place": (
        "PositionalEncoding",
        _cls(
            """X += self.P[:X.shape[1]]
        return self.dropout(X)"""
        ),
        ["PositionalEncoding_adds_P", "PositionalEncoding_dropout"],  # both tests see X changed
    ),
    "PositionalEncoding_own_P_sin_cos_swapped": (
        "PositionalEncoding",
        """
class PositionalEncoding(nn.Module):
    def __init__(self, num_hiddens, dropout, max_len=1000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        angle = torch.arange(max_len)[:, None] / 10000 ** (torch.arange(0, num_hiddens, 2) / num_hiddens)
        self.P = torch.zeros(max_len, num_hiddens)
        self.P[:, 0::2], self.P[:, 1::2] = torch.cos(angle), torch.sin(angle)

    def forward(self, X):
        return self.dropout(X + self.P[:X.shape[1]])
""",
        ["PositionalEncoding_adds_P", "PositionalEncoding_dropout"],
    ),
    # Part 2 wrong, Part 3 (the reference, which calls positional_encoding) must keep its points
    "positional_encoding_wrong_class_uses_it": (
        "positional_encoding",
        """
def positional_encoding(num_steps, num_hiddens):
    return torch.ones(num_steps, num_hiddens)
""",
        ["positional_encoding_matches_formula"],
    ),
}
