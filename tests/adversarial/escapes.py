"""Ways around the in-kernel checks (issue 18, class 2), each a hostile notebook with the score it must earn.

Two checks watch the student's call from inside the kernel: forbidden built-ins (`checks.forbid`) and the
memory bound of `online_softmax_attention` (now read from the sandbox's cgroup by the judge, with the in-kernel
`LargestIntermediate` as a second line). Each notebook here is *right* in value and breaks one rule in a way the
kernel's thread-local torch modes alone would not see: the forbidden work (or the full score matrix) happens in
another thread, after the modes were popped or switched off, or after the course's check machinery was rebound.
The rule they prove: such a bypass fails the check (the score drops by exactly the checked tests' points) or is
flagged for review (`flagged`); never silent. `honest` references in each assignment keep full marks.
"""

from __future__ import annotations

from pathlib import Path

from adversarial import Case
from attention_course import notebooks as nbt

SOFTMAX_THREAD = """import concurrent.futures
_pool = concurrent.futures.ThreadPoolExecutor(1)
def softmax(x, dim=-1):
    return _pool.submit(torch.softmax, x, dim).result()
"""
# a thread started when the cell runs, long before any test: it does the forbidden work on request
SOFTMAX_WAITING_THREAD = """import queue, threading
_jobs, _done = queue.Queue(), queue.Queue()
def _worker():
    while True:
        x, dim = _jobs.get()
        try:
            _done.put(torch.softmax(x, dim))
        except Exception as exc:
            _done.put(exc)
threading.Thread(target=_worker, daemon=True).start()
def softmax(x, dim=-1):
    _jobs.put((x, dim))
    out = _done.get()
    if isinstance(out, Exception):
        raise out
    return out
"""
SOFTMAX_POP_MODES = """from torch.utils._python_dispatch import _pop_mode
def softmax(x, dim=-1):
    try:
        _pop_mode()
        torch._C._pop_torch_function_stack()
    except Exception:
        pass
    return torch.softmax(x, dim)
"""
SOFTMAX_DISABLED_MODES = """from torch.utils._python_dispatch import _disable_current_modes
def softmax(x, dim=-1):
    with _disable_current_modes(), torch._C.DisableTorchFunction():
        return torch.softmax(x, dim)
"""
SOFTMAX_REBIND_AGENT = """import contextlib
import attention_course.grading.agent as _agent
import attention_course.checks as _checks
_agent._forbid = _checks.forbid = lambda *names, **kwargs: contextlib.nullcontext()
def softmax(x, dim=-1):
    return torch.softmax(x, dim)
"""
# torch's own Python decomposition of softmax: no forbidden operator runs, so no check can fail it; flagged
SOFTMAX_DECOMPOSITION = """from torch._decomp import decomposition_table
def softmax(x, dim=-1):
    return decomposition_table[torch.ops.aten._softmax.default](x, dim, False)
"""

_FULL = """    s = queries @ keys.transpose(-2, -1) * queries.shape[-1] ** -0.5
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).triu(1), float("-inf"))
    w = torch.exp(s - s.amax(-1, keepdim=True))
    return (w / w.sum(-1, keepdim=True)) @ values
"""
FULL_SCORES_THREAD = (
    "import threading\n"
    "def _full(queries, keys, values, causal):\n" + _FULL + "\n"
    "def online_softmax_attention(queries, keys, values, block_size=64, causal=False):\n"
    "    box = {}\n"
    "    worker = threading.Thread(target=lambda: box.update(out=_full(queries, keys, values, causal)))\n"
    "    worker.start()\n"
    "    worker.join()\n"
    "    return box['out']\n"
)
FULL_SCORES_MODES_OFF = (
    "from torch.utils._python_dispatch import _disable_current_modes\n"
    "def _full(queries, keys, values, causal):\n" + _FULL + "\n"
    "def online_softmax_attention(queries, keys, values, block_size=64, causal=False):\n"
    "    with _disable_current_modes():\n"
    "        return _full(queries, keys, values, causal)\n"
)
# no torch operator makes the score matrix, so no in-kernel tensor check sees it: only the cgroup does (no flag)
FULL_SCORES_NUMPY = """import numpy as np
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    q, k, v = queries.numpy(), keys.numpy(), values.numpy()
    s = q @ k.transpose(0, 2, 1) * np.float32(q.shape[-1] ** -0.5)
    if causal:
        s = np.where(np.triu(np.ones(s.shape[-2:], dtype=bool), 1), np.float32(-np.inf), s)
    w = np.exp(s - s.max(-1, keepdims=True))
    return torch.from_numpy((w / w.sum(-1, keepdims=True)) @ v)
"""
SDPA_THREAD = """import concurrent.futures
_pool = concurrent.futures.ThreadPoolExecutor(1)
def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return _pool.submit(sdpa, queries, keys, values, is_causal=causal).result()
"""
MHA_SDPA_THREAD_FORWARD = """
    def forward(self, queries, keys, values, valid_lens=None):
        q = transpose_qkv(self.W_q(queries), self.num_heads)
        k = transpose_qkv(self.W_k(keys), self.num_heads)
        v = transpose_qkv(self.W_v(values), self.num_heads)
        if valid_lens is not None:
            valid_lens = torch.repeat_interleave(valid_lens, self.num_heads, dim=0)
        _, self.attention_weights = dot_product_attention(q, k, v, valid_lens, self.dropout)
        mask = None
        if valid_lens is not None:
            lens = valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(-1, q.shape[1])
            mask = torch.arange(k.shape[1])[None, None, :] < lens[..., None]
        sdpa = torch.nn.functional.scaled_dot_product_attention
        heads = _pool.submit(sdpa, q, k, v, attn_mask=mask).result()
        return self.W_o(transpose_output(heads, self.num_heads))
"""

FLAGGED = "flagged for review"


def build(course: Path, root: Path) -> dict[str, Case]:
    """Write every escape under course/submitted; student -> expected outcome (with its assignment)."""
    cases: dict[str, Case] = {}

    def put(student: str, assignment: str, answers: dict[str, str], score: float, reason: str) -> None:
        release = nbt.read(root / "exercises" / assignment / f"{assignment}.ipynb")
        ref = nbt.reference_answers(nbt.read(root / "solutions" / assignment / f"{assignment}.ipynb"))
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbt.write(nbt.with_answers(release, {**ref, **answers}), folder / f"{assignment}.ipynb")
        cases[student] = Case(score, "graded", reason, assignment)

    # attention-pooling (10): the two softmax tests (3 + 1) forbid torch's softmax
    pooling = "attention-pooling"
    put("escape-honest-pooling", pooling, {}, 10, "all tests passed")
    put("escape-softmax-thread", pooling, {"softmax": SOFTMAX_THREAD}, 6, FLAGGED)
    put("escape-softmax-waiting-thread", pooling, {"softmax": SOFTMAX_WAITING_THREAD}, 6, FLAGGED)
    put("escape-softmax-pop-modes", pooling, {"softmax": SOFTMAX_POP_MODES}, 6, FLAGGED)
    put("escape-softmax-modes-off", pooling, {"softmax": SOFTMAX_DISABLED_MODES}, 6, FLAGGED)
    put("escape-softmax-rebinds-agent", pooling, {"softmax": SOFTMAX_REBIND_AGENT}, 6, FLAGGED)
    put("escape-softmax-decomposition", pooling, {"softmax": SOFTMAX_DECOMPOSITION}, 10, FLAGGED)
    # efficient-attention (10): matches 4, causal 3 (SDPA and softmax forbidden), memory 3 (and the bound)
    efficient = "efficient-attention"
    put("escape-honest-efficient", efficient, {}, 10, "all tests passed")
    put("escape-full-scores-thread", efficient, {"online_softmax_attention": FULL_SCORES_THREAD}, 7, FLAGGED)
    put("escape-full-scores-modes-off", efficient, {"online_softmax_attention": FULL_SCORES_MODES_OFF}, 7, FLAGGED)
    put(
        "escape-full-scores-numpy",
        efficient,
        {"online_softmax_attention": FULL_SCORES_NUMPY},
        7,
        "online_softmax_attention_memory: AssertionError: memory rose by",
    )
    put("escape-sdpa-thread", efficient, {"online_softmax_attention": SDPA_THREAD}, 0, FLAGGED)
    # multi-head (12): shapes 1, matches_torch 4, per_query_lens 2 forbid SDPA inside the module
    heads = "multi-head"
    ref = nbt.reference_answers(nbt.read(root / "solutions" / heads / f"{heads}.ipynb"))["MultiHeadAttention"]
    init = ref[: ref.index("    def forward(")]
    mha = "import concurrent.futures\n_pool = concurrent.futures.ThreadPoolExecutor(1)\n\n" + init
    put("escape-honest-heads", heads, {}, 12, "all tests passed")
    put("escape-mha-sdpa-thread", heads, {"MultiHeadAttention": mha + MHA_SDPA_THREAD_FORWARD.lstrip("\n")}, 5, FLAGGED)
    return cases
