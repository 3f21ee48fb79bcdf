"""Simulated submissions for the assignment efficient-attention (`online_softmax_attention`).

MORE_CORRECT holds further correct variants; tests/test_reference_efficient_attention.py runs the hidden tests on
all of them in-process (fast), while tests/test_autograde_class.py grades CORRECT and WRONG with nbgrader.
"""

# The blocked loop is the same for most mistakes; each WRONG entry changes one thing in it.
_TEMPLATE = '''
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    """blockwise attention"""
    B, n_q, d = queries.shape
    n_k = keys.shape[1]
    scale = {scale}
    m = torch.full((B, n_q, 1), float("-inf"))
    l = torch.zeros(B, n_q, 1)
    acc = torch.zeros(B, n_q, values.shape[-1])
    rows = torch.arange(n_q)[:, None]
    for j0 in range({blocks}):
        kb, vb = keys[:, j0:j0 + block_size], values[:, j0:j0 + block_size]
        s = torch.bmm(queries, kb.transpose(1, 2)) * scale
        if causal:
            cols = {cols}
            s = s.masked_fill({mask}, float("-inf"))
        m_new = {m_new}
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = {l_update}
        acc = {acc_update}
        {m_keep}
    return acc / l
'''
_RIGHT = dict(
    m_new="torch.maximum(m, s.amax(dim=2, keepdim=True))",
    m_keep="m = m_new",
    scale="d ** -0.5",
    blocks="0, n_k, block_size",
    cols="torch.arange(j0, j0 + kb.shape[1])[None, :]",
    mask="cols > rows",
    l_update="alpha * l + p.sum(dim=2, keepdim=True)",
    acc_update="alpha * acc + torch.bmm(p, vb)",
)


def _variant(**changes):
    return _TEMPLATE.format(**{**_RIGHT, **changes})


CORRECT = {
    # exp2 instead of exp (scores pre-multiplied by log2(e)), a large negative fill instead of -inf, einsum
    "online_softmax_attention": '''
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    """online softmax in base 2"""
    n_q, n_k = queries.shape[-2], keys.shape[-2]
    c = math.log2(math.e) / math.sqrt(queries.shape[-1])
    best = None
    total = None
    out = None
    i = torch.arange(n_q).view(-1, 1)
    for lo in range(0, n_k, block_size):
        hi = min(lo + block_size, n_k)
        s2 = torch.einsum("bqd,bkd->bqk", queries, keys[:, lo:hi]) * c
        if causal:
            j = torch.arange(lo, hi).view(1, -1)
            s2 = torch.where(j <= i, s2, torch.full_like(s2, -1e30))
        blk = s2.amax(dim=-1, keepdim=True)
        new_best = blk if best is None else torch.maximum(best, blk)
        p = torch.exp2(s2 - new_best)
        pv = torch.einsum("bqk,bkv->bqv", p, values[:, lo:hi])
        if best is None:
            total, out = p.sum(-1, keepdim=True), pv
        else:
            f = torch.exp2(best - new_best)
            total, out = total * f + p.sum(-1, keepdim=True), out * f + pv
        best = new_best
    return out / total
''',
}

MORE_CORRECT = {
    "template": _variant(),
    # running log-sum-exp instead of a running max and sum, torch.logsumexp per block
    "running_logsumexp": '''
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    """running log-sum-exp"""
    n_q, n_k, d = queries.shape[1], keys.shape[1], queries.shape[2]
    lse = torch.full((queries.shape[0], n_q, 1), -float("inf"))
    out = torch.zeros(queries.shape[0], n_q, values.shape[2])
    for a in range(0, n_k, block_size):
        s = queries @ keys[:, a:a + block_size].mT / math.sqrt(d)
        if causal:
            s = s.masked_fill(torch.arange(a, a + s.shape[-1]) > torch.arange(n_q)[:, None], -float("inf"))
        block_lse = torch.logsumexp(s, dim=-1, keepdim=True)
        new_lse = torch.logaddexp(lse, block_lse)
        out = out * torch.exp(lse - new_lse) + torch.exp(s - new_lse) @ values[:, a:a + block_size]
        lse = new_lse
    return out
''',
    # causal: blocks entirely in the future are skipped (FlashAttention's saving)
    "skips_future_blocks": _variant(blocks="0, min(n_k, n_q) if causal else n_k, block_size"),
}

WRONG = {
    "sum_not_rescaled": (
        "online_softmax_attention",
        _variant(l_update="l + p.sum(dim=2, keepdim=True)"),
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
    "output_not_rescaled": (
        "online_softmax_attention",
        _variant(acc_update="acc + torch.bmm(p, vb)"),
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
    # the max of the first block is kept: right in exact arithmetic, overflows when later scores are larger
    "max_of_first_block_only": (
        "online_softmax_attention",
        _variant(m_new="s.amax(dim=2, keepdim=True) if j0 == 0 else m"),
        ["online_softmax_attention_matches_softmax"],
    ),
    # m = m_new forgotten: m stays -inf, every block wipes out the previous ones
    "max_never_stored": (
        "online_softmax_attention",
        _variant(m_keep="pass"),
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
    "not_scaled": (
        "online_softmax_attention",
        _variant(scale="1.0"),
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
    "scaled_by_d": (
        "online_softmax_attention",
        _variant(scale="1.0 / d"),
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
    "causal_off_by_one": (
        "online_softmax_attention",
        _variant(mask="cols >= rows"),
        ["online_softmax_attention_causal"],
    ),
    "causal_mask_ignores_block_offset": (
        "online_softmax_attention",
        _variant(cols="torch.arange(kb.shape[1])[None, :]"),
        ["online_softmax_attention_causal"],
    ),
    "last_partial_block_dropped": (
        "online_softmax_attention",
        _variant(blocks="0, n_k - block_size + 1, block_size"),
        # the memory test's n_k (8000) is not a multiple of its block size either: its values are checked too
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
    "full_score_matrix": (
        "online_softmax_attention",
        '''
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    """all scores first, then the online update over column blocks"""
    n_q, n_k, d = queries.shape[1], keys.shape[1], queries.shape[2]
    scores = queries @ keys.transpose(1, 2) / math.sqrt(d)
    if causal:
        scores = scores.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(1), float("-inf"))
    m = torch.full((queries.shape[0], n_q, 1), float("-inf"))
    l = torch.zeros_like(m)
    acc = torch.zeros(queries.shape[0], n_q, values.shape[2])
    for j0 in range(0, n_k, block_size):
        s = scores[:, :, j0:j0 + block_size]
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        p = torch.exp(s - m_new)
        l = torch.exp(m - m_new) * l + p.sum(-1, keepdim=True)
        acc = torch.exp(m - m_new) * acc + p @ values[:, j0:j0 + block_size]
        m = m_new
    return acc / l
''',
        ["online_softmax_attention_memory"],
    ),
    # blockwise scores, but one n_q x n_k causal mask made up front
    "full_causal_mask": (
        "online_softmax_attention",
        _variant(
            cols="torch.arange(j0, j0 + kb.shape[1])[None, :]; full = torch.ones(n_q, n_k, dtype=torch.bool).tril()",
            mask="~full[:, j0:j0 + block_size]",
        ),
        ["online_softmax_attention_memory"],
    ),
    "calls_sdpa": (
        "online_softmax_attention",
        """
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    return torch.nn.functional.scaled_dot_product_attention(queries, keys, values, is_causal=causal)
""",
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
    "scales_queries_in_place": (
        "online_softmax_attention",
        _variant(scale="1.0; queries *= d ** -0.5"),
        [
            "online_softmax_attention_matches_softmax",
            "online_softmax_attention_causal",
            "online_softmax_attention_memory",
        ],
    ),
}

# Mistakes that Validate (the visible tests) lets through on purpose; tests/test_visible_tests.py checks this set.
HIDDEN_ONLY = {
    # right values and one block of memory: only the graded, instrumented test (forbid) sees the forbidden call
    "calls_sdpa",
}
