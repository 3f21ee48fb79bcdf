"""Simulated submissions for the assignment attention-pooling."""

CORRECT = {
    # log-sum-exp formulation, written with torch.logsumexp rather than an explicit max
    "softmax": '''
def softmax(x, dim=-1):
    """softmax via log-sum-exp"""
    return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))
''',
    "dot_product_scores": """
def dot_product_scores(queries, keys):
    return torch.einsum("...qd,...kd->...qk", queries, keys)
""",
    # explicit loop over queries (slow but right)
    "attention_pooling": """
def attention_pooling(weights, values):
    rows = [weights[..., i, :].unsqueeze(-2) @ values for i in range(weights.shape[-2])]
    return torch.cat(rows, dim=-2)
""",
}

WRONG = {
    "softmax_without_max_shift": (
        "softmax",
        """
def softmax(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)
""",
        ["softmax_is_stable"],
    ),
    "softmax_ignores_dim": (
        "softmax",
        """
def softmax(x, dim=-1):
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)
""",
        ["softmax_matches_torch", "softmax_is_stable"],
    ),
    "softmax_global_max_and_sum": (
        "softmax",
        """
def softmax(x, dim=-1):
    e = torch.exp(x - x.max())
    return e / e.sum()
""",
        ["softmax_matches_torch", "softmax_is_stable"],
    ),
    "softmax_calls_builtin": (
        "softmax",
        """
def softmax(x, dim=-1):
    return torch.nn.functional.softmax(x, dim=dim)
""",
        ["softmax_matches_torch", "softmax_is_stable"],
    ),
    "softmax_in_place": (
        "softmax",
        """
def softmax(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)
    x.exp_()
    return x / x.sum(dim=dim, keepdim=True)
""",
        ["softmax_matches_torch", "softmax_is_stable"],
    ),  # the caller's tensor is overwritten
    "dot_product_scores_scaled": (
        "dot_product_scores",
        """
def dot_product_scores(queries, keys):
    return queries @ keys.transpose(-2, -1) / queries.shape[-1] ** 0.5
""",
        ["dot_product_scores_matches_matmul"],
    ),
    "dot_product_scores_dot_T": (
        "dot_product_scores",
        """
def dot_product_scores(queries, keys):
    return queries @ keys.T
""",
        ["dot_product_scores_matches_matmul"],
    ),
    "dot_product_scores_keys_first": (
        "dot_product_scores",
        """
def dot_product_scores(queries, keys):
    return keys @ queries.transpose(-2, -1)
""",
        ["dot_product_scores_matches_matmul"],
    ),
    "attention_pooling_renormalises": (
        "attention_pooling",
        """
def attention_pooling(weights, values):
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ values
""",
        ["attention_pooling_matches_weighted_sum"],
    ),
    "attention_pooling_bmm_only_3d": (
        "attention_pooling",
        """
def attention_pooling(weights, values):
    return torch.bmm(weights, values)
""",
        ["attention_pooling_matches_weighted_sum"],
    ),
    "attention_pooling_elementwise_mean": (
        "attention_pooling",
        """
def attention_pooling(weights, values):
    return weights.mean(dim=-1, keepdim=True) * values.mean(dim=-2, keepdim=True) * weights.shape[-1]
""",
        ["attention_pooling_matches_weighted_sum"],
    ),
}

# Mistakes that Validate (the visible tests) lets through on purpose; tests/test_visible_tests.py checks this set.
HIDDEN_ONLY = {
    # the built-in softmax gives the right values: only the graded, instrumented test (forbid) sees the call
    "softmax_calls_builtin",
}
