"""Simulated submissions for the assignment modern-attention (`apply_rope`, `sliding_window_mask`,
`GroupedQueryAttention` with its key-value cache).

The wrong answers are variations of plausible student answers (`_STUDENT_ROPE`, `_STUDENT_WINDOW`,
`_STUDENT_GQA`, none of them the reference) with a single mistake each, so that every mistake is judged alone.
MORE_CORRECT holds further correct variants; tests/test_reference_modern_attention.py runs the hidden tests on all
of them in-process (fast), while tests/test_autograde_class.py grades CORRECT and WRONG with nbgrader. The
`apply_rope_not_done` entry proves self-containment: the reference class calls `apply_rope` by name and keeps
its points, because the graded cells of Part 3 put a trusted `apply_rope` in place first.
"""


def _edit(source, *changes):
    """`source` with (old, new) text changes applied; each old text must occur exactly once."""
    for old, new in changes:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


# A student's RoPE with cos and sin on the even and odd features.
_STUDENT_ROPE = '''
def apply_rope(x, positions=None, base=10000.0):
    """cos/sin on even and odd features"""
    n, d = x.shape[-2:]
    if positions is None:
        positions = torch.arange(n)
    freqs = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    angle = positions.float().unsqueeze(1) * freqs.unsqueeze(0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x_even * cos - x_odd * sin
    out[..., 1::2] = x_even * sin + x_odd * cos
    return out
'''

_STUDENT_WINDOW = '''
def sliding_window_mask(num_steps, window):
    """distance between query and key"""
    i = torch.arange(num_steps).view(-1, 1)
    j = torch.arange(num_steps).view(1, -1)
    return (j <= i) & (i - j < window)
'''

# A student's grouped-query attention: its own reshapes, apply_rope by name, concatenated caches,
# repeat_interleave, a boolean mask built from positions.
_STUDENT_GQA = """
class GroupedQueryAttention(nn.Module):
    def __init__(self, d_in, d_out, num_heads, num_kv_groups, dropout=0.0, qkv_bias=False, rope_base=None):
        super().__init__()
        self.h, self.g = num_heads, num_kv_groups
        self.hd = d_out // num_heads
        self.rope_base = rope_base
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, num_kv_groups * self.hd, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, num_kv_groups * self.hd, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cache=None):
        B, n, _ = x.shape
        Q = self.W_query(x).reshape(B, n, self.h, self.hd).permute(0, 2, 1, 3)
        K = self.W_key(x).reshape(B, n, self.g, self.hd).permute(0, 2, 1, 3)
        V = self.W_value(x).reshape(B, n, self.g, self.hd).permute(0, 2, 1, 3)
        start = 0 if cache is None else cache[0].shape[2]
        pos = torch.arange(start, start + n)
        if self.rope_base is not None:
            Q = apply_rope(Q, pos, self.rope_base)
            K = apply_rope(K, pos, self.rope_base)
        if cache is not None:
            K = torch.cat([cache[0], K], dim=2)
            V = torch.cat([cache[1], V], dim=2)
        new_cache = (K, V)
        K = K.repeat_interleave(self.h // self.g, dim=1)
        V = V.repeat_interleave(self.h // self.g, dim=1)
        scores = Q @ K.transpose(2, 3) / math.sqrt(self.hd)
        allowed = torch.arange(K.shape[2])[None, :] <= pos[:, None]
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = self.drop(torch.softmax(scores, dim=-1))
        out = (weights @ V).permute(0, 2, 1, 3).reshape(B, n, self.h * self.hd)
        return self.out_proj(out), new_cache
"""

CORRECT = {
    # complex numbers: each pair as x_2j + i x_2j+1, multiplied by e^(i theta)
    "apply_rope": '''
def apply_rope(x, positions=None, base=10000.0):
    """pairs as complex numbers"""
    n, d = x.shape[-2], x.shape[-1]
    pos = torch.arange(n) if positions is None else positions
    inv = torch.pow(torch.tensor(float(base)), -torch.arange(d // 2) * 2.0 / d)
    rot = torch.polar(torch.ones(n, d // 2), torch.outer(pos.float(), inv))
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rot).reshape(x.shape)
''',
    # a lower band: the causal triangle minus everything `window` or more steps back
    "sliding_window_mask": '''
def sliding_window_mask(num_steps, window):
    """triangle minus a triangle"""
    ones = torch.ones(num_steps, num_steps, dtype=torch.bool)
    return torch.tril(ones) & ~torch.tril(ones, diagonal=-window)
''',
    # expand + reshape instead of repeat_interleave, its own cos/sin rotation (no apply_rope), a preallocated
    # cache filled by slices, einsum, a large negative fill
    "GroupedQueryAttention": '''
class GroupedQueryAttention(nn.Module):
    """expand + reshape, own rotation, preallocated cache"""
    def __init__(self, d_in, d_out, num_heads, num_kv_groups, dropout=0.0, qkv_bias=False, rope_base=None):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_groups = num_kv_groups
        self.head_dim = d_out // num_heads
        self.rope_base = rope_base
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, num_kv_groups * self.head_dim, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, num_kv_groups * self.head_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out, bias=False)
        self.p = dropout

    def _rotate(self, t, pos):
        d = t.shape[-1]
        theta = pos[:, None].double() * self.rope_base ** (-torch.arange(0, d, 2).double() / d)
        c, s = theta.cos().float(), theta.sin().float()
        a, b = t[..., ::2], t[..., 1::2]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)

    def forward(self, x, cache=None):
        B, n, _ = x.shape
        G, H, D = self.num_kv_groups, self.num_heads, self.head_dim
        q = self.W_query(x).view(B, n, H, D).transpose(1, 2)
        k = self.W_key(x).view(B, n, G, D).transpose(1, 2)
        v = self.W_value(x).view(B, n, G, D).transpose(1, 2)
        past = 0 if cache is None else cache[0].size(2)
        pos = torch.arange(past, past + n)
        if self.rope_base is not None:
            q, k = self._rotate(q, pos), self._rotate(k, pos)
        keys = torch.empty(B, G, past + n, D, dtype=k.dtype)
        values = torch.empty(B, G, past + n, D, dtype=v.dtype)
        if cache is not None:
            keys[:, :, :past], values[:, :, :past] = cache
        keys[:, :, past:], values[:, :, past:] = k, v
        k_all = keys[:, :, None].expand(B, G, H // G, past + n, D).reshape(B, H, past + n, D)
        v_all = values[:, :, None].expand(B, G, H // G, past + n, D).reshape(B, H, past + n, D)
        s = torch.einsum("bhqd,bhkd->bhqk", q, k_all) / D ** 0.5
        s = torch.where(torch.arange(past + n)[None, :] <= pos[:, None], s, torch.full_like(s, -1e9))
        w = nn.functional.dropout(torch.softmax(s, dim=-1), self.p, self.training)
        ctx = torch.einsum("bhqk,bhkd->bqhd", w, v_all).reshape(B, n, H * D)
        return self.out_proj(ctx), (keys, values)
''',
}

MORE_CORRECT = {
    "rope_template": ("apply_rope", _STUDENT_ROPE),
    # GPT-J's rotate_every_two: full-width cos/sin with each angle twice, and (-x_odd, x_even) interleaved
    "rope_rotate_every_two": (
        "apply_rope",
        '''
def apply_rope(x, positions=None, base=10000.0):
    """rotate every two"""
    d = x.shape[-1]
    p = torch.arange(x.shape[-2]) if positions is None else positions
    ang = torch.einsum("n,f->nf", p.to(torch.float32), base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d))
    ang = ang.repeat_interleave(2, dim=-1)
    swapped = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).reshape(x.shape)
    return x * ang.cos() + swapped * ang.sin()
''',
    ),
    "window_template": ("sliding_window_mask", _STUDENT_WINDOW),
    "window_loops": (
        "sliding_window_mask",
        '''
def sliding_window_mask(num_steps, window):
    """two loops"""
    mask = torch.zeros(num_steps, num_steps, dtype=torch.bool)
    for i in range(num_steps):
        for j in range(max(0, i - window + 1), i + 1):
            mask[i, j] = True
    return mask
''',
    ),
    "gqa_template": ("GroupedQueryAttention", _STUDENT_GQA),
    # one loop over heads, a causal band built with tril(diagonal=n_past)
    "gqa_loop_over_heads": (
        "GroupedQueryAttention",
        _edit(
            _STUDENT_GQA,
            (
                """        K = K.repeat_interleave(self.h // self.g, dim=1)
        V = V.repeat_interleave(self.h // self.g, dim=1)
        scores = Q @ K.transpose(2, 3) / math.sqrt(self.hd)
        allowed = torch.arange(K.shape[2])[None, :] <= pos[:, None]
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = self.drop(torch.softmax(scores, dim=-1))
        out = (weights @ V).permute(0, 2, 1, 3).reshape(B, n, self.h * self.hd)
""",
                """        allowed = torch.ones(n, K.shape[2], dtype=torch.bool).tril(diagonal=start)
        heads = []
        for i in range(self.h):
            g = i // (self.h // self.g)
            s = (Q[:, i] @ K[:, g].transpose(1, 2) / math.sqrt(self.hd)).masked_fill(~allowed, -float("inf"))
            heads.append(self.drop(torch.softmax(s, dim=-1)) @ V[:, g])
        out = torch.cat(heads, dim=-1)
""",
            ),
        ),
    ),
}


def _rope(*changes):
    return _edit(_STUDENT_ROPE, *changes)


def _window(*changes):
    return _edit(_STUDENT_WINDOW, *changes)


def _gqa(*changes):
    return _edit(_STUDENT_GQA, *changes)


_ROPE_VALUES, _ROPE_POSITIONS = "apply_rope_rotates_pairs", "apply_rope_positions_relative"
_WINDOW = "sliding_window_mask_band"
_LAYERS, _SDPA, _CACHE = (
    "GroupedQueryAttention_layers",
    "GroupedQueryAttention_matches_sdpa",
    "GroupedQueryAttention_cache",
)

WRONG = {
    # --- apply_rope ---
    # GPT-NeoX / Hugging Face Llama layout: feature j paired with j + d/2
    "rope_half_split_layout": (
        "apply_rope",
        _rope(
            ("x_even, x_odd = x[..., 0::2], x[..., 1::2]", "x_even, x_odd = x[..., : d // 2], x[..., d // 2:]"),
            (
                """    out = torch.empty_like(x)
    out[..., 0::2] = x_even * cos - x_odd * sin
    out[..., 1::2] = x_even * sin + x_odd * cos
    return out""",
                "    return torch.cat([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1)",
            ),
        ),
        [_ROPE_VALUES],
    ),
    # pair j turns by base**(-j/d) instead of base**(-2j/d)
    "rope_wrong_frequency_exponent": (
        "apply_rope",
        _rope(("torch.arange(0, d, 2).float() / d", "torch.arange(d // 2).float() / d")),
        [_ROPE_VALUES],
    ),
    # clockwise: the minus sign on the second output
    "rope_rotation_sign": (
        "apply_rope",
        _rope(
            ("out[..., 0::2] = x_even * cos - x_odd * sin", "out[..., 0::2] = x_even * cos + x_odd * sin"),
            ("out[..., 1::2] = x_even * sin + x_odd * cos", "out[..., 1::2] = -x_even * sin + x_odd * cos"),
        ),
        [_ROPE_VALUES],
    ),
    "rope_sin_cos_swapped": (
        "apply_rope",
        _rope(("cos, sin = torch.cos(angle), torch.sin(angle)", "cos, sin = torch.sin(angle), torch.cos(angle)")),
        [_ROPE_VALUES],
    ),  # a rotation by pi/2 - theta: relative positions still work, the values do not
    "rope_base_ignored": ("apply_rope", _rope(("(base **", "(10000.0 **")), [_ROPE_VALUES]),
    # positions=... accepted but never used: every call rotates as if the tokens were at 0..n-1
    "rope_positions_ignored": (
        "apply_rope",
        _rope(
            (
                """    if positions is None:
        positions = torch.arange(n)""",
                "    positions = torch.arange(n)",
            )
        ),
        [_ROPE_POSITIONS],
    ),
    # the angle uses the pair index, not the position
    "rope_angle_without_position": (
        "apply_rope",
        _rope(
            (
                "angle = positions.float().unsqueeze(1) * freqs.unsqueeze(0)",
                "angle = torch.ones(n, 1) * freqs.unsqueeze(0)",
            )
        ),
        [_ROPE_VALUES, _ROPE_POSITIONS],
    ),
    "apply_rope_not_done": (
        "apply_rope",
        '''
def apply_rope(x, positions=None, base=10000.0):
    """Rotary position embedding."""
    raise NotImplementedError("Replace this line with your answer.")
''',
        [_ROPE_VALUES, _ROPE_POSITIONS],
    ),  # the reference class, which calls it, keeps its 6 points
    # --- sliding_window_mask ---
    "window_off_by_one": ("sliding_window_mask", _window(("i - j < window", "i - j <= window")), [_WINDOW]),
    "window_symmetric": (
        "sliding_window_mask",
        _window(("(j <= i) & (i - j < window)", "(i - j).abs() < window")),
        [_WINDOW],
    ),
    "window_excludes_the_query": (
        "sliding_window_mask",
        _window(("(j <= i) & (i - j < window)", "(j < i) & (i - j <= window)")),
        [_WINDOW],
    ),
    # True where attention is *blocked* (nn.MultiheadAttention's convention)
    "window_inverted": (
        "sliding_window_mask",
        _window(("return (j <= i) & (i - j < window)", "return ~((j <= i) & (i - j < window))")),
        [_WINDOW],
    ),
    # --- GroupedQueryAttention ---
    # heads g0, g1, g0, g1 instead of g0, g0, g1, g1
    "gqa_repeat_not_repeat_interleave": (
        "GroupedQueryAttention",
        _gqa(
            ("K = K.repeat_interleave(self.h // self.g, dim=1)", "K = K.repeat(1, self.h // self.g, 1, 1)"),
            ("V = V.repeat_interleave(self.h // self.g, dim=1)", "V = V.repeat(1, self.h // self.g, 1, 1)"),
        ),
        [_SDPA],
    ),
    "gqa_scaled_by_d_out": (
        "GroupedQueryAttention",
        _gqa(("/ math.sqrt(self.hd)", "/ math.sqrt(self.h * self.hd)")),
        [_SDPA],
    ),
    # features split as (head_dim, heads): head i gets features i, i + h, ...
    "gqa_head_minor_split": (
        "GroupedQueryAttention",
        _gqa(
            (
                "Q = self.W_query(x).reshape(B, n, self.h, self.hd).permute(0, 2, 1, 3)",
                "Q = self.W_query(x).reshape(B, n, self.hd, self.h).permute(0, 3, 1, 2)",
            ),
            (
                "K = self.W_key(x).reshape(B, n, self.g, self.hd).permute(0, 2, 1, 3)",
                "K = self.W_key(x).reshape(B, n, self.hd, self.g).permute(0, 3, 1, 2)",
            ),
            (
                "V = self.W_value(x).reshape(B, n, self.g, self.hd).permute(0, 2, 1, 3)",
                "V = self.W_value(x).reshape(B, n, self.hd, self.g).permute(0, 3, 1, 2)",
            ),
        ),
        [_SDPA, _CACHE],
    ),
    "gqa_rope_on_values": (
        "GroupedQueryAttention",
        _gqa(
            (
                "            K = apply_rope(K, pos, self.rope_base)\n",
                "            K = apply_rope(K, pos, self.rope_base)\n            V = apply_rope(V, pos, self.rope_base)\n",
            )
        ),
        [_SDPA, _CACHE],
    ),
    "gqa_dropout_in_eval": (
        "GroupedQueryAttention",
        _gqa(
            (
                "weights = self.drop(torch.softmax(scores, dim=-1))",
                "weights = nn.functional.dropout(torch.softmax(scores, dim=-1), self.drop.p, training=True)",
            )
        ),
        [_SDPA, _CACHE],
    ),  # both cells use dropout p > 0 in eval mode
    # every call rotates its tokens as if they were at 0..n-1
    "gqa_positions_ignored_with_cache": (
        "GroupedQueryAttention",
        _gqa(
            (
                "            Q = apply_rope(Q, pos, self.rope_base)\n            K = apply_rope(K, pos, self.rope_base)",
                "            Q = apply_rope(Q, None, self.rope_base)\n            K = apply_rope(K, None, self.rope_base)",
            )
        ),
        [_CACHE],
    ),
    # the cache holds unrotated keys; all keys are rotated again at every call (right outputs, wrong cache)
    "gqa_keys_cached_before_rotation": (
        "GroupedQueryAttention",
        _gqa(
            (
                """        if self.rope_base is not None:
            Q = apply_rope(Q, pos, self.rope_base)
            K = apply_rope(K, pos, self.rope_base)
        if cache is not None:
            K = torch.cat([cache[0], K], dim=2)
            V = torch.cat([cache[1], V], dim=2)
        new_cache = (K, V)
""",
                """        if cache is not None:
            K = torch.cat([cache[0], K], dim=2)
            V = torch.cat([cache[1], V], dim=2)
        new_cache = (K, V)
        if self.rope_base is not None:
            Q = apply_rope(Q, pos, self.rope_base)
            K = apply_rope(K, None, self.rope_base)
""",
            )
        ),
        [_CACHE],
    ),
    # is_causal's top-left alignment: new query t sees keys 0..t instead of 0..n_past+t
    "gqa_top_left_alignment_with_cache": (
        "GroupedQueryAttention",
        _gqa(
            (
                "allowed = torch.arange(K.shape[2])[None, :] <= pos[:, None]",
                "allowed = torch.ones(n, K.shape[2], dtype=torch.bool).tril()",
            )
        ),
        [_CACHE],
    ),
    # the causal mask only when there is no cache (right for one token at a time, wrong for longer chunks)
    "gqa_no_mask_with_cache": (
        "GroupedQueryAttention",
        _gqa(
            (
                'scores = scores.masked_fill(~allowed, float("-inf"))',
                'scores = scores.masked_fill(~allowed, float("-inf")) if cache is None else scores',
            )
        ),
        [_CACHE],
    ),
    # the cache stores the keys and values repeated per head
    "gqa_cache_holds_heads": (
        "GroupedQueryAttention",
        _gqa(
            (
                """        if cache is not None:
            K = torch.cat([cache[0], K], dim=2)
            V = torch.cat([cache[1], V], dim=2)
        new_cache = (K, V)
        K = K.repeat_interleave(self.h // self.g, dim=1)
        V = V.repeat_interleave(self.h // self.g, dim=1)
""",
                """        K = K.repeat_interleave(self.h // self.g, dim=1)
        V = V.repeat_interleave(self.h // self.g, dim=1)
        if cache is not None:
            K = torch.cat([cache[0], K], dim=2)
            V = torch.cat([cache[1], V], dim=2)
        new_cache = (K, V)
""",
            )
        ),
        [_LAYERS, _CACHE],
    ),
    # only the new keys and values are returned: the next call forgets the past
    "gqa_cache_not_extended": (
        "GroupedQueryAttention",
        _gqa(
            (
                "        new_cache = (K, V)\n        K = K.repeat",
                "        new_cache = (K[:, :, -n:], V[:, :, -n:])\n        K = K.repeat",
            )
        ),
        [_LAYERS, _CACHE],
    ),
    # RoPE over all d_out features before the split into heads (d = d_out instead of head_dim)
    # RoPE over all features of a token before the split into heads (d = d_out instead of head_dim)
    "gqa_rope_before_head_split": (
        "GroupedQueryAttention",
        _gqa(
            (
                "            Q = apply_rope(Q, pos, self.rope_base)\n            K = apply_rope(K, pos, self.rope_base)",
                "            Q = apply_rope(Q.permute(0, 2, 1, 3).reshape(B, n, -1), pos, self.rope_base)\n"
                "            Q = Q.reshape(B, n, self.h, self.hd).permute(0, 2, 1, 3)\n"
                "            K = apply_rope(K.permute(0, 2, 1, 3).reshape(B, n, -1), pos, self.rope_base)\n"
                "            K = K.reshape(B, n, self.g, self.hd).permute(0, 2, 1, 3)",
            )
        ),
        [_SDPA, _CACHE],
    ),
    "gqa_calls_sdpa": (
        "GroupedQueryAttention",
        _gqa(
            (
                """        K = K.repeat_interleave(self.h // self.g, dim=1)
        V = V.repeat_interleave(self.h // self.g, dim=1)
        scores = Q @ K.transpose(2, 3) / math.sqrt(self.hd)
        allowed = torch.arange(K.shape[2])[None, :] <= pos[:, None]
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = self.drop(torch.softmax(scores, dim=-1))
        out = (weights @ V).permute(0, 2, 1, 3).reshape(B, n, self.h * self.hd)
""",
                """        allowed = torch.arange(K.shape[2])[None, :] <= pos[:, None]
        out = nn.functional.scaled_dot_product_attention(Q, K, V, attn_mask=allowed, enable_gqa=True)
        out = out.permute(0, 2, 1, 3).reshape(B, n, self.h * self.hd)
""",
            )
        ),
        [_LAYERS, _SDPA, _CACHE],
    ),
}

# Mistakes that Validate (the visible tests) lets through on purpose; tests/test_visible_tests.py checks this set.
HIDDEN_ONLY = {
    # SDPA gives the right values: only the graded, instrumented tests (forbid) see the call
    "gqa_calls_sdpa",
}
