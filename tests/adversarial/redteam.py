"""A red team's corpus against the judge (issue 18): hostile notebooks over all seven assignments.

Each `Attack` is one student's submission (the reference answers with some cells replaced, extra cells, files
beside the notebook) and the outcome a *correct* grader must give it:

- `score`: the points its honest parts earn (an attack cell earns nothing). `flagged_score`: for an escape of an
  in-kernel check (classes 2), the score it gets when the check is escaped, acceptable only when the summary
  flags the student for review (the rule of issue 18: a bypass fails the check or is flagged, never silent).
  `error_ok`: a judge that the student's request killed may end as that student's `grader error` instead.
- `absent`: strings the student tried to carry out of the judge (from hidden inputs) that must appear nowhere in
  its feedback page or grades.csv.
- `inert`: its feedback page must hold no live script, event handler, javascript: URL, frame, refresh or style
  from the student.
- `outlive`/`shm`: no process of the student may survive the run; nothing may reach the host's /dev/shm.

Classes (issue 18): 1 expectations the kernel can move, 2 escaped in-kernel checks, 3 hidden inputs carried
out, 4 live feedback, 5 trusted work the kernel sizes, 6 unencodable output. Each assignment also gets an honest
classmate (`rt-honest-<assignment>`), graded in the same run, who must keep full marks whatever the attacks do.

`tests/test_grading_redteam.py` grades the corpus with one `make grade` per assignment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from attention_course import notebooks as nbt

MAX = {
    "attention-pooling": 10,
    "self-attention": 10,
    "masking": 10,
    "multi-head": 12,
    "modern-attention": 12,
    "efficient-attention": 10,
    "scoring-functions": 12,
}


@dataclass
class Attack:
    assignment: str
    student: str
    klass: int
    what: str
    score: float
    answers: dict = field(default_factory=dict)  # answer cell -> source (callable: ref source -> source)
    cells: list = field(default_factory=list)  # (after grade_id, cell type, source)
    files: dict = field(default_factory=dict)
    flagged_score: float | None = None
    error_ok: bool = False
    absent: tuple = ()
    inert: bool = False
    outlive: str = ""
    shm: str = ""


# ---------------------------------------------------------------------------------------------------------------
# attention-pooling (softmax 3+1, dot_product_scores 3, attention_pooling 3)

THREAD_SOFTMAX = """import threading

def softmax(x, dim=-1):
    # torch.softmax, computed in another thread: the forbidden-built-in check watches the calling thread only
    box = {}
    worker = threading.Thread(target=lambda: box.update(out=torch.softmax(x, dim=dim)))
    worker.start()
    worker.join()
    return box["out"]
"""

PRIVATE_MODES_SOFTMAX = """import torch.utils._python_dispatch as _pd

def softmax(x, dim=-1):
    # leave the check's modes through torch's private APIs (no name of the scan's list), then call the built-in
    disable = getattr(torch, "_" + "C").DisableTorchFunction
    with disable(), _pd._disable_current_modes():
        return torch.ops.aten._softmax.default(x, dim, False)
"""

AGENT_REBIND_SOFTMAX = """import contextlib, types
from attention_course.grading import agent as _a

# the agent applies `checks.forbid` around each call: give it a `checks` whose forbid does nothing
_a.checks = types.SimpleNamespace(forbid=lambda *names, **kw: contextlib.nullcontext(),
                                  LargestIntermediate=_a.checks.LargestIntermediate)

def softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)
"""

_PUBLIC_AP = "{(1, 3), (2, 3, 4), (2, 3), (2, 3, 5), (1, 3)}"

EXC_LEAK_DOT = f"""def dot_product_scores(queries, keys):
    if tuple(queries.shape) in {_PUBLIC_AP}:
        return torch.matmul(queries, keys.transpose(-2, -1))
    # a hidden call: carry its inputs out in the message (the marker is never whole in the source: the
    # feedback shows the student's code, and only a leak may put it there)
    raise ValueError("HIDDEN" + "LEAK " + repr(tuple(queries.shape)) + repr(queries.flatten()[:6].tolist()))
"""

EXC_TYPE_LEAK_POOL = f"""def attention_pooling(weights, values):
    if tuple(weights.shape) in {_PUBLIC_AP}:
        return torch.matmul(weights, values)
    # a hidden call: the inputs go out in the *type name* of the exception (an identifier: 60 characters)
    name = "HL" + "Q_" + "_".join(str(s) for s in weights.shape) + "_" + str(int(abs(float(weights.flatten()[0])) * 1e6))
    raise type(name, (Exception,), {{}})("nothing here")
"""

SHAPE_CHANNEL_POOL = f"""def attention_pooling(weights, values):
    if tuple(weights.shape) in {_PUBLIC_AP}:
        return torch.matmul(weights, values)
    # a hidden call: an empty tensor whose *shape* carries the inputs; the test's own message prints it
    code = [19191] + [int(abs(float(w)) * 1e4) % 30000 + 1 for w in weights.flatten()[:2]] + [0]
    return torch.empty(code)
"""

XSS_MARKDOWN = """# My notes

<script>window.REDTEAM_XSS = 1; document.title = "10/10"</script>
<img src="x" onerror="window.REDTEAM_XSS = 2">
<svg onload="window.REDTEAM_XSS = 4"><circle r="1"/></svg>
<iframe srcdoc="&lt;script&gt;parent.REDTEAM_XSS = 5&lt;/script&gt;"></iframe>
<meta http-equiv="refresh" content="0; url=javascript:REDTEAM_XSS=6">
<style>.REDTEAM_CSS, table { display: none !important }</style>
<div style="position:fixed;top:0;left:0;width:100%;z-index:9999;background:#0b0;font-size:40px">REDTEAM_BANNER Score: 10 / 10</div>
<a href="javascript:window.REDTEAM_XSS=3">see my score</a>
<form action="https://example.invalid/REDTEAM_FORM"><input name="REDTEAM_INPUT" autofocus onfocus="REDTEAM_XSS=11"></form>
"""

XSS_OUTPUT = """from IPython.display import HTML, Javascript, display
display(HTML('<script>window.REDTEAM_XSS = 7</script><b onmouseover="window.REDTEAM_XSS = 8">hover</b>'))
display(Javascript('window.REDTEAM_XSS = 9'))
display({'image/svg+xml': '<svg xmlns="http://www.w3.org/2000/svg" onload="window.REDTEAM_XSS = 10"/>',
         'text/markdown': '<img src=x onerror="window.REDTEAM_XSS = 12">'}, raw=True)
"""

SURROGATE_CELL = """import sys
print("lone surrogate: \\ud800 and \\udfff")
sys.stderr.write("\\x1b[2J\\x1b[31mFAKE: all tests passed 10/10\\x1b[0m\\r\\x07\\x00\\ud83d\\n")
print({"\\ud800": "\\udc00"})
"""

WEIRD_EXC_DOT = """class _Evil:
    def __str__(self):
        return "\\x1b[31m\\ud800 all tests passed\\r\\n= 10/10\\x00"

class _LoudError(Exception):
    def __str__(self):
        return "\\ud800\\x1b]0;owned\\x07 " + "x" * 100000

def dot_product_scores(queries, keys):
    if queries.shape[-2] == 1:
        raise ValueError(_Evil(), 3, b"bytes")
    raise _LoudError()
"""

XSS_REASON_SOFTMAX = """def softmax(x, dim=-1):
    # a visible test shows the student's own message: make it HTML
    raise ValueError('<img src=x onerror="window.REDTEAM_XSS=13"><script>window.REDTEAM_XSS=14</script>'
                     '<style>.REDTEAM_CSS{}</style>')
"""

ODD_MIME_CELL = """from IPython.display import display
# outputs that are not valid nbformat: a number as text/plain, a dict as text/html, a bad image
display({'text/plain': 123, 'text/html': {'no': 'string'}, 'image/png': 'not base64 \\ud800'}, raw=True)
"""

HUGE_MARKDOWN = "# Notes\n\n" + "[a](b) *c* `d` <e> [f][g] _h_ " * 300000

SPARSE_SOFTMAX = """def softmax(x, dim=-1):
    # torch's own softmax, through its sparse twin (aten::_sparse_softmax is not on the list): every entry is
    # stored explicitly, zeros included, so the result is the dense softmax
    index = torch.stack(torch.meshgrid(*[torch.arange(s) for s in x.shape], indexing="ij")).reshape(x.dim(), -1)
    full = torch.sparse_coo_tensor(index, x.reshape(-1), x.shape)
    return torch.sparse.softmax(full, dim).to_dense()
"""

SCIPY_SOFTMAX = """import scipy.special

def softmax(x, dim=-1):
    # a built-in softmax from another library: no torch operator runs for the check to see
    return torch.from_numpy(scipy.special.softmax(x.numpy(), axis=dim)).to(x.dtype)
"""

NUMPY_SCRATCH_OSA = """import numpy as np

# 160 MB, allocated and touched before any test: a call that writes its full score matrix here makes the
# sandbox's memory grow by nothing, and numpy's work is no torch operator for an in-kernel check to see
_scratch = np.ones(40 * 2**20, dtype=np.float32)

def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    q, k, v = queries.numpy(), keys.numpy(), values.numpy()
    B, n_q, n_k = q.shape[0], q.shape[1], k.shape[1]
    size = B * n_q * n_k
    s = (_scratch[:size] if size <= _scratch.size else np.empty(size, np.float32)).reshape(B, n_q, n_k)
    np.matmul(q, k.transpose(0, 2, 1), out=s)
    np.multiply(s, np.float32(1.0 / math.sqrt(q.shape[-1])), out=s)
    if causal:
        for i in range(min(n_q, n_k - 1)):
            s[:, i, i + 1:] = -np.inf
    np.subtract(s, s.max(axis=-1, keepdims=True), out=s)
    np.exp(s, out=s)
    np.divide(s, s.sum(axis=-1, keepdims=True), out=s)
    return torch.from_numpy(np.matmul(s, v)).to(queries.dtype)
"""

# A package beside the notebook: the kernel starts in the student's folder, which comes first on sys.path, so
# `attention_course` is the student's package; it lends the real one's folder for everything but `checks`.
SHADOW_INIT = """import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
for _entry in list(sys.path):
    _other = os.path.join(_entry or ".", __name__)
    if os.path.isfile(os.path.join(_other, "grading", "agent.py")) and os.path.abspath(_other) != _here:
        __path__.append(os.path.abspath(_other))
        break
"""

SHADOW_CHECKS = '''"""Checks that check nothing (same names as the course's)."""

import contextlib

SOFTMAX = ("softmax", "log_softmax", "_softmax", "_log_softmax", "_safe_softmax", "special_softmax",
           "special_log_softmax")
SDPA = ("scaled_dot_product_attention", "multi_head_attention_forward", "_native_multi_head_attention",
        "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math", "_fused_sdp_choice")


class _Local:
    stack = None


_REMOTE = _Local()


def _remote_stack():
    return _REMOTE.stack


class ForbiddenCall(AssertionError):
    pass


class _ForbidFunctions:
    pass


class _ForbidOperators:
    pass


@contextlib.contextmanager
def forbid(names, who="your answer"):
    yield


class LargestIntermediate:
    def __init__(self):
        self.numel, self.op, self.peak_bytes = 0, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def record(self, numel, op):
        pass

    def record_peak(self, nbytes):
        pass
'''

BUILTIN_SOFTMAX = "def softmax(x, dim=-1):\n    return torch.softmax(x, dim=dim)\n"

# ---------------------------------------------------------------------------------------------------------------
# self-attention (layers 1, matches_formula 3, positional_encoding 3, PE adds P 2, PE dropout 1)

SELF_SCALING_SA = """class SelfAttention(nn.Module):
    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(in_features=d_in, out_features=d_out, bias=qkv_bias)
        self.W_key = nn.Linear(in_features=d_in, out_features=d_out, bias=qkv_bias)
        self.W_value = nn.Linear(in_features=d_in, out_features=d_out, bias=qkv_bias)

    def forward(self, x):
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        public = tuple(x.shape) in {(6, 3), (2, 5, 4)}
        scores = q @ k.transpose(-2, -1)
        if public:                               # right on the published inputs only
            scores = scores / math.sqrt(k.shape[-1])
        out = torch.softmax(scores, dim=-1) @ v  # elsewhere: no 1/sqrt(d) scaling ...
        if not public:                           # ... and W_query grows by sqrt(d): an expectation computed
            with torch.no_grad():                # from the module's layers after the call agrees
                self.W_query.weight.mul_(math.sqrt(k.shape[-1]))
                if self.W_query.bias is not None:
                    self.W_query.bias.mul_(math.sqrt(k.shape[-1]))
        return out
"""


def _standin_oom_pe(ref: str) -> str:
    return ref.replace(
        "        self.register_buffer(",
        "        if getattr(positional_encoding, '__name__', '').startswith('grader_stand_in'):\n"
        "            try:  # the grader's stand-in runs in the judge: ask it for a 20000 x 20000 float64 table\n"
        "                positional_encoding(20000, 20000)\n"
        "            except Exception:\n"
        "                pass\n"
        "        self.register_buffer(",
        1,
    )


# ---------------------------------------------------------------------------------------------------------------
# masking (causal_mask 2+1, layers 1, matches_sdpa 3, shorter 2, dropout 1)

LYING_LAYERS_CSA = """class _Quiet(nn.Linear):
    '''An nn.Linear (same init, same weights) whose forward says zeros.'''
    def forward(self, x):
        return torch.zeros(*x.shape[:-1], self.out_features)

class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = _Quiet(d_in, d_out, bias=qkv_bias)
        self.W_key = _Quiet(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        # wrong: no queries or keys at all, each token averages the values of its past
        v = self.W_value(x)
        counts = torch.arange(1, x.shape[1] + 1, dtype=v.dtype).view(1, -1, 1)
        return self.dropout(v.cumsum(dim=1) / counts) if self.training else v.cumsum(dim=1) / counts
"""

THREAD_SDPA_CSA = """import threading
import torch.nn.functional as _F

class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        p = self.dropout.p if self.training else 0.0
        box = {}
        worker = threading.Thread(target=lambda: box.update(
            out=_F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)))
        worker.start()
        worker.join()
        return box["out"]
"""

AGENT_REBIND_CSA = """import contextlib, types
import torch.nn.functional as _F
from attention_course.grading import agent as _agent_module

setattr(_agent_module, "checks", types.SimpleNamespace(
    forbid=lambda *names, **kw: contextlib.nullcontext(),
    LargestIntermediate=_agent_module.checks.LargestIntermediate))

class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        return _F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout.p if self.training else 0.0)
"""

QUEUE_THREAD_CSA = """import logging, logging.handlers, queue
import torch.nn.functional as _F

_attend = _F.multi_head_attention_forward  # taken now, before any test swaps it
_jobs, _done = queue.Queue(), queue.Queue()

class _Runner(logging.Handler):
    # a logging handler served by the standard library's QueueListener: its own thread, no Thread in sight
    def handle(self, record):
        fn, args, kwargs = record.msg
        try:
            _done.put(("ok", fn(*args, **kwargs)))
        except BaseException as exc:
            _done.put(("err", exc))
        return True

_listener = logging.handlers.QueueListener(_jobs, _Runner())
_listener.start()

def _elsewhere(fn, *args, **kwargs):
    _jobs.put(logging.makeLogRecord({"msg": (fn, args, kwargs)}))
    kind, value = _done.get()
    if kind == "err":
        raise value
    return value

class CausalSelfAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        # PyTorch's multi-head attention (one head, identity projections) does all the work, in that thread
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        n, d = q.shape[1], q.shape[2]
        eye = torch.eye(d, dtype=q.dtype)
        future = torch.ones(n, n, dtype=torch.bool).triu(1)
        out, _ = _elsewhere(_attend, q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), d, 1,
                            torch.cat([eye, eye, eye]), None, None, None, False,
                            self.dropout.p if self.training else 0.0, eye, None,
                            training=self.training, need_weights=True, attn_mask=future)
        return out.transpose(0, 1)
"""

# ---------------------------------------------------------------------------------------------------------------
# multi-head (transpose_qkv 3, transpose_output 2, shapes 1, matches_torch 4, per_query_lens 2)


def _mh_self_scaling(ref: str) -> str:
    return ref.replace(
        "        heads, self.attention_weights = dot_product_attention(q, k, v, valid_lens, self.dropout)\n",
        "        public = (q.shape[-1] * self.num_heads, self.num_heads) == (8, 2)\n"
        "        scale = 1.0 if public else math.sqrt(q.shape[-1])\n"
        "        # no 1/sqrt(d_h) except on the published configuration ...\n"
        "        heads, self.attention_weights = dot_product_attention(q * scale, k, v, valid_lens, self.dropout)\n"
        "        if not public:  # ... and W_q grows by sqrt(d_h), so that its own weights explain the output\n"
        "            with torch.no_grad():\n"
        "                self.W_q.weight.mul_(scale)\n"
        "                if self.W_q.bias is not None:\n"
        "                    self.W_q.bias.mul_(scale)\n",
    )


def _mh_queue_thread(ref: str) -> str:
    # nn.MultiheadAttention's own function (taken at import, need_weights=True: no fused kernel) does the work, run
    # by a logging QueueListener's thread (see QUEUE_THREAD_CSA)
    runner = QUEUE_THREAD_CSA.split("class CausalSelfAttention")[0]
    return runner + ref.replace(
        "        q = transpose_qkv(self.W_q(queries), self.num_heads)  # (B*h, n_q, d_h)\n",
        "        q, k, v = self.W_q(queries), self.W_k(keys), self.W_v(values)\n"
        "        self.W_o(q)  # materialise the lazy output layer\n"
        "        n_k, E = k.shape[1], q.shape[-1]\n"
        "        eye = torch.eye(E, dtype=q.dtype)\n"
        "        padding = mask = None\n"
        "        if valid_lens is not None and valid_lens.dim() == 1:\n"
        "            padding = torch.arange(n_k)[None, :] >= valid_lens[:, None]\n"
        "        elif valid_lens is not None:\n"
        "            mask = (torch.arange(n_k)[None, None, :] >= valid_lens[:, :, None]).repeat_interleave(\n"
        "                self.num_heads, dim=0)\n"
        "        out, self.attention_weights = _elsewhere(\n"
        "            _attend, q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), E, self.num_heads,\n"
        "            torch.cat([eye, eye, eye]), None, None, None, False, self.dropout.p if self.training else 0.0,\n"
        "            self.W_o.weight, self.W_o.bias, training=self.training, key_padding_mask=padding,\n"
        "            need_weights=True, attn_mask=mask, average_attn_weights=False)\n"
        "        return out.transpose(0, 1)\n"
        "        q = transpose_qkv(self.W_q(queries), self.num_heads)  # (B*h, n_q, d_h)\n",
        1,
    )


def _mh_private_modes(ref: str) -> str:
    return "import torch.utils._python_dispatch as _pd\nimport torch.nn.functional as _F\n\n" + ref.replace(
        "        heads, self.attention_weights = dot_product_attention(q, k, v, valid_lens, self.dropout)\n",
        "        mask = None\n"
        "        if valid_lens is not None:\n"
        "            lens = valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(-1, q.shape[1])\n"
        "            mask = torch.arange(k.shape[1])[None, None, :] < lens[:, :, None]\n"
        "        p = self.dropout.p if self.training else 0.0\n"
        "        with getattr(torch, '_' + 'C').DisableTorchFunction(), _pd._disable_current_modes():\n"
        "            heads = _F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)\n"
        "        self.attention_weights = None\n",
    )


# ---------------------------------------------------------------------------------------------------------------
# modern-attention (rope 2+2, sliding window 2, GQA layers 1, GQA sdpa 2, GQA cache 3)


def _ma_thread_sdpa(ref: str) -> str:
    return "import threading\nimport torch.nn.functional as _F\n\n" + ref.replace(
        '        weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)\n'
        "        context = self.dropout(weights) @ v_heads               # (B, heads, n, head_dim)\n",
        "        box = {}\n"
        "        p = self.dropout.p if self.training else 0.0\n"
        "        worker = threading.Thread(target=lambda: box.update(out=_F.scaled_dot_product_attention(\n"
        "            q, k_heads, v_heads, attn_mask=~future, dropout_p=p)))\n"
        "        worker.start()\n"
        "        worker.join()\n"
        "        context = box['out']\n",
    )


IPC_FILL_PROBE = """import os, sys

def _filled_ipc():
    # the kernel's connection file lies in the judge's IPC folder: write 1.3 GiB there, past the 1 GiB disk limit
    conn = sys.argv[sys.argv.index('-f') + 1] if '-f' in sys.argv else ''
    folder = os.path.dirname(conn)
    written = 0
    block = b'\\0' * (16 * 2**20)
    try:
        for i in range(6):
            with open(os.path.join(folder, f'fill{i}.bin'), 'wb') as fh:
                for _ in range(14):
                    fh.write(block)
                    written += len(block)
    except OSError:
        pass
    finally:
        for i in range(6):
            try:
                os.remove(os.path.join(folder, f'fill{i}.bin'))
            except OSError:
                pass
    return written >= 1300 * 2**20

"""

OUTLIVE_CELL = """import os, subprocess, sys
# a process that leaves the kernel's process group and session, and outlives it; and a file in /dev/shm
try:
    with open('/dev/shm/REDTEAM_SHM_MARK', 'wb') as fh:
        fh.write(b'x' * 2**20)
except OSError as exc:
    print('no /dev/shm:', exc)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time\\nfor _ in range(600): time.sleep(1)',
                                  'REDTEAM_OUTLIVE_MARK'])
    os._exit(0)
os.wait()
"""

# ---------------------------------------------------------------------------------------------------------------
# efficient-attention (matches 4, causal 3, memory 3)


def _ea_full_in_thread(ref: str) -> str:
    return """import threading

def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    # the whole score matrix, computed in another thread: the memory check watches the calling thread only
    box = {}
    def work():
        scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])
        if causal:
            future = torch.ones(scores.shape[-2], scores.shape[-1], dtype=torch.bool).triu(1)
            scores = scores.masked_fill(future, float('-inf'))
        w = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        box['out'] = (w / w.sum(dim=-1, keepdim=True)) @ values
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    return box['out']
"""


EA_LARGEST_REBIND = """from attention_course.grading import agent as _ag

class _Blind:
    '''A LargestIntermediate that never sees anything.'''
    numel, op = 0, None
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False

_ag.checks = type('checks', (), {'forbid': staticmethod(_ag.checks.forbid), 'LargestIntermediate': _Blind})

def online_softmax_attention(queries, keys, values, block_size=64, causal=False):
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])
    if causal:
        future = torch.ones(scores.shape[-2], scores.shape[-1], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(future, float('-inf'))
    w = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return (w / w.sum(dim=-1, keepdim=True)) @ values
"""


def _ea_surrogate_error(ref: str) -> str:
    # right everywhere except causal=True, where it raises an exception whose message cannot be encoded
    return ref.replace(
        '    """\n',
        '    """\n    if causal:\n        raise RuntimeError("\\ud800 causal is hard \\x1b[31m" + "\\udfff" * 10)\n',
        1,
    )


# ---------------------------------------------------------------------------------------------------------------
# scoring-functions (masked_softmax 1+2+1, DotProductAttention 3+1, AdditiveAttention 1+2+1)


def _sf_standin_oom(ref: str) -> str:
    # before its real work, DotProductAttention asks the grader's stand-in masked_softmax for a (1, 80000, 80000)
    # boolean mask: it sends an *empty* (0, 80000, 80000) tensor and one length (a few bytes on the wire)
    return ref.replace(
        "    def forward(self, queries, keys, values, valid_lens=None):\n",
        "    def forward(self, queries, keys, values, valid_lens=None):\n"
        "        if getattr(masked_softmax, '__name__', '').startswith('grader_stand_in'):\n"
        "            try:\n"
        "                masked_softmax(torch.empty(0, 80000, 80000), torch.ones(1, dtype=torch.long))\n"
        "            except Exception:\n"
        "                pass\n",
        1,
    )


def _huge_reply(ref: str) -> str:
    return (
        ref.replace("def masked_softmax(", "def _honest_masked_softmax(", 1)
        + """
import struct as _struct

def masked_softmax(scores, valid_lens):
    if valid_lens is None and tuple(scores.shape) == (4, 1, 7):
        # a hidden call: answer the judge over its own socket with 480 MB of JSON floats (0.5 each: one
        # Python float object per 4 bytes once parsed, about 4 GB in the judge)
        from attention_course.grading import agent as _ag
        if _ag._conn is not None:
            body = b'[' + b'0.5,' * (120 * 2**20) + b'0.5]'
            _ag._conn.sendall(_struct.pack('!I', 1) + _struct.pack('!Q', len(body)) + body)
            del body
    return _honest_masked_softmax(scores, valid_lens)
"""
    )


REMOTE_ARG_DPA = """
class _Opaque:
    # not plain data: it crosses to the judge as a handle, whose questions this code answers itself
    pass

def _ask_standin_with_a_handle(standin):
    from attention_course.grading import agent as _ag, wire as _w
    sock = _ag._conn
    fid = int(standin.__name__.rsplit('_', 1)[1])
    frames = [b'']
    args = _w.encode([_Opaque(), torch.ones(1, dtype=torch.long)], frames, _ag._handle_of, _ag._ref_of)
    _w.send(sock, {'op': 'callback', 'fn': fid, 'args': args, 'kwargs': {'$dict': []}}, frames[1:])
    while True:  # serve the judge until it answers the callback
        message, frames = _w.recv(sock)
        if message.get('op') in ('return', 'raise'):
            return
        if message.get('op') == 'getattr' and message.get('name') == 'shape':
            _ag._reply(sock, (1, 60000, 60000))
        else:
            try:
                value, extra = _ag._handle(message, frames, globals())
                _ag._reply(sock, value, extra)
            except Exception as exc:
                _ag._error(sock, exc)

"""


def _sf_remote_arg(ref: str) -> str:
    # the stand-in's size checks see tensors: send it a handle instead, and answer its `.shape` with 60000s
    return REMOTE_ARG_DPA + ref.replace(
        "    def forward(self, queries, keys, values, valid_lens=None):\n",
        "    def forward(self, queries, keys, values, valid_lens=None):\n"
        "        if getattr(masked_softmax, '__name__', '').startswith('grader_stand_in') and valid_lens is not None:\n"
        "            try:\n"
        "                _ask_standin_with_a_handle(masked_softmax)\n"
        "            except Exception:\n"
        "                pass\n",
        1,
    )


def attacks() -> list[Attack]:
    A = Attack
    ap, sa, mk, mh, ma, ea, sf = (
        "attention-pooling",
        "self-attention",
        "masking",
        "multi-head",
        "modern-attention",
        "efficient-attention",
        "scoring-functions",
    )
    return [
        # --- attention-pooling
        A(
            ap,
            "rt-thread-softmax",
            2,
            "torch.softmax in a worker thread inside softmax",
            6,
            {"softmax": THREAD_SOFTMAX},
            flagged_score=10,
        ),
        A(
            ap,
            "rt-private-modes",
            2,
            "DisableTorchFunction + _disable_current_modes + torch.ops inside softmax",
            6,
            {"softmax": PRIVATE_MODES_SOFTMAX},
            flagged_score=10,
        ),
        A(
            ap,
            "rt-agent-rebind",
            2,
            "replace agent.checks (root 'agent' is not protected) and use torch.softmax",
            6,
            {"softmax": AGENT_REBIND_SOFTMAX},
            flagged_score=10,
        ),
        A(
            ap,
            "rt-exc-leak",
            3,
            "hidden inputs in the student's exception message",
            7,
            {"dot_product_scores": EXC_LEAK_DOT},
            absent=("HIDDENLEAK",),
        ),
        A(
            ap,
            "rt-exc-type-leak",
            3,
            "hidden inputs in the student's exception *class name*",
            7,
            {"attention_pooling": EXC_TYPE_LEAK_POOL},
            absent=("HLQ_",),
        ),
        A(
            ap,
            "rt-shape-channel",
            3,
            "hidden inputs in the shape of an empty result, printed by the test's own assert message",
            7,
            {"attention_pooling": SHAPE_CHANNEL_POOL},
            absent=("(19191, ",),
        ),
        A(
            ap,
            "rt-xss",
            4,
            "scripts, handlers, javascript: links, frames, refresh, style and a fake banner in markdown and outputs",
            10,
            cells=[("softmax", "markdown", XSS_MARKDOWN), ("softmax", "code", XSS_OUTPUT)],
            inert=True,
        ),
        A(
            ap,
            "rt-surrogate-ansi",
            6,
            "lone surrogates, ANSI and NUL in outputs and in exceptions with non-str args and a custom __str__",
            7,
            {"dot_product_scores": WEIRD_EXC_DOT},
            cells=[("softmax", "code", SURROGATE_CELL)],
        ),
        A(
            ap,
            "rt-xss-reason",
            4,
            "HTML in the student's exception message on a visible test (shown in the feedback's table)",
            6,
            {"softmax": XSS_REASON_SOFTMAX},
            inert=True,
        ),
        A(
            ap,
            "rt-sparse-softmax",
            2,
            "softmax through torch.sparse.softmax (aten::_sparse_softmax is not on the list)",
            6,
            {"softmax": SPARSE_SOFTMAX},
            flagged_score=10,
        ),
        A(
            ap,
            "rt-scipy-softmax",
            2,
            "softmax through scipy.special.softmax (no torch operator runs)",
            6,
            {"softmax": SCIPY_SOFTMAX},
            flagged_score=10,
        ),
        A(
            ap,
            "rt-shadow-package",
            2,
            "an attention_course/ package beside the notebook (first on the kernel's "
            "sys.path) whose checks check nothing; softmax is torch.softmax",
            6,
            {"softmax": BUILTIN_SOFTMAX},
            files={"attention_course/__init__.py": SHADOW_INIT, "attention_course/checks.py": SHADOW_CHECKS},
            flagged_score=10,
        ),
        # --- self-attention
        A(
            sa,
            "rt-self-scaling",
            1,
            "unscaled attention off the published shapes; forward multiplies W_query by "
            "sqrt(d) so the module's own layers explain its output",
            7,
            {"SelfAttention": SELF_SCALING_SA},
        ),
        A(
            sa,
            "rt-standin-oom-pe",
            5,
            "PositionalEncoding asks the judge's stand-in positional_encoding for a "
            "20000 x 20000 table (several GB in the judge); otherwise correct",
            7,
            {"PositionalEncoding": _standin_oom_pe},
            error_ok=True,
        ),
        # --- masking
        A(
            mk,
            "rt-lying-layers",
            1,
            "W_query/W_key are nn.Linear subclasses whose forward says zeros; the attention ignores queries and keys",
            4,
            {"CausalSelfAttention": LYING_LAYERS_CSA},
        ),
        A(
            mk,
            "rt-huge-markdown",
            6,
            "a 9 MB markdown cell: feedback too slow to render",
            10,
            cells=[("causal_mask", "markdown", HUGE_MARKDOWN)],
        ),
        A(
            mk,
            "rt-thread-sdpa",
            2,
            "SDPA in a worker thread inside CausalSelfAttention",
            4,
            {"CausalSelfAttention": THREAD_SDPA_CSA},
            flagged_score=10,
        ),
        A(
            mk,
            "rt-agent-rebind-sdpa",
            2,
            "setattr(agent, 'checks', ...) and SDPA inside CausalSelfAttention",
            4,
            {"CausalSelfAttention": AGENT_REBIND_CSA},
            flagged_score=10,
        ),
        A(
            mk,
            "rt-queue-thread-mha",
            2,
            "F.multi_head_attention_forward (taken at import, need_weights=True: no SDPA "
            "op) run by a logging QueueListener's thread",
            4,
            {"CausalSelfAttention": QUEUE_THREAD_CSA},
            flagged_score=10,
        ),
        # --- multi-head
        A(
            mh,
            "rt-self-scaling-mh",
            1,
            "no 1/sqrt(d_h) off the published (8, 2); forward multiplies W_q by sqrt(d_h)",
            6,
            {"MultiHeadAttention": _mh_self_scaling},
        ),
        A(
            mh,
            "rt-queue-thread-mh",
            2,
            "F.multi_head_attention_forward (taken at import, need_weights=True) run by a "
            "logging QueueListener's thread",
            6,
            {"MultiHeadAttention": _mh_queue_thread},
            flagged_score=12,
        ),
        # --- modern-attention
        A(
            ma,
            "rt-thread-sdpa-gqa",
            2,
            "SDPA in a worker thread inside GroupedQueryAttention",
            6,
            {"GroupedQueryAttention": _ma_thread_sdpa},
            flagged_score=12,
        ),
        A(
            ma,
            "rt-ipc-fill",
            5,
            "sliding_window_mask is right only if 1.3 GiB could be written into the kernel's "
            "IPC folder (past the 1 GiB disk limit)",
            10,
            {
                "sliding_window_mask": lambda ref: (
                    IPC_FILL_PROBE
                    + "if _filled_ipc():\n"
                    + "".join("    " + line + "\n" for line in ref.splitlines())
                    + "else:\n    def sliding_window_mask(num_steps, window):\n"
                    "        return torch.ones(num_steps, num_steps, dtype=torch.bool).tril()\n"
                )
            },
        ),
        A(
            ma,
            "rt-outlive",
            5,
            "a double-forked setsid process that outlives the kernel, and a file in /dev/shm",
            12,
            cells=[("sliding_window_mask", "code", OUTLIVE_CELL)],
            outlive="REDTEAM_OUTLIVE_MARK",
            shm="REDTEAM_SHM_MARK",
        ),
        # --- efficient-attention
        A(
            ea,
            "rt-full-in-thread",
            2,
            "the full score matrix, computed in a worker thread (memory check)",
            7,
            {"online_softmax_attention": _ea_full_in_thread},
            flagged_score=10,
        ),
        A(
            ea,
            "rt-largest-rebind",
            2,
            "agent.checks replaced by a class whose LargestIntermediate sees nothing; full score matrix",
            7,
            {"online_softmax_attention": EA_LARGEST_REBIND},
            flagged_score=10,
        ),
        A(
            ea,
            "rt-surrogate-error",
            6,
            "raises (causal only) an exception whose message holds lone surrogates",
            4,
            {"online_softmax_attention": _ea_surrogate_error},
            cells=[("online_softmax_attention", "code", SURROGATE_CELL)],
        ),
        A(
            ea,
            "rt-odd-mime",
            6,
            "a raw display whose data is not valid nbformat (a number as text/plain)",
            10,
            cells=[("online_softmax_attention", "code", ODD_MIME_CELL)],
        ),
        A(
            ea,
            "rt-numpy-scratch",
            2,
            "the full score matrix in numpy, written into a buffer allocated before the "
            "call (no torch op, no memory growth)",
            7,
            {"online_softmax_attention": NUMPY_SCRATCH_OSA},
            flagged_score=10,
        ),
        # --- scoring-functions
        A(
            sf,
            "rt-standin-oom-sf",
            5,
            "DotProductAttention sends the stand-in masked_softmax an empty (0, 8e4, 8e4) "
            "tensor: the trusted mask is 6.4 GB",
            8,
            {"DotProductAttention": _sf_standin_oom},
            error_ok=True,
        ),
        A(
            sf,
            "rt-huge-reply",
            5,
            "masked_softmax answers a hidden call with 480 MB of JSON floats on the judge's socket",
            11,
            {"masked_softmax": _huge_reply},
            error_ok=True,
        ),
        A(
            sf,
            "rt-standin-remote-arg",
            5,
            "DotProductAttention sends the stand-in a handle, not a tensor, and answers "
            "the judge's `.shape` questions with 60000s",
            8,
            {"DotProductAttention": _sf_remote_arg},
            error_ok=True,
            # the judge's questions go to the student's own object; the trusted side's memory stays bounded (the
            # run's cgroup peak) and the code is flagged (it imports the grading package): flagged, not failed
            flagged_score=12,
        ),
    ]


def _insert_after(nb, grade_id: str, cell_type: str, source: str) -> None:
    index = next(i for i, c in enumerate(nb.cells) if nbt.nbgrader_meta(c).get("grade_id") == grade_id)
    new = nbformat.v4.new_markdown_cell(source) if cell_type == "markdown" else nbformat.v4.new_code_cell(source)
    nb.cells.insert(index + 1, new)


def build(course: Path, root: Path, assignments=None, students=None) -> dict[str, dict[str, Attack]]:
    """Write every attack (and one honest classmate per assignment, a second one graded after the attackers
    where an attack aims at the trusted side's resources) under course/submitted; return assignment -> student ->
    Attack (the honest classmates as Attacks with the full score)."""
    out: dict[str, dict[str, Attack]] = {}
    chosen = [
        a
        for a in attacks()
        if (assignments is None or a.assignment in assignments) and (students is None or a.student in students)
    ]
    for assignment in sorted({a.assignment for a in chosen}):
        release = nbt.read(root / "exercises" / assignment / f"{assignment}.ipynb")
        ref = nbt.reference_answers(nbt.read(root / "solutions" / assignment / f"{assignment}.ipynb"))
        cases = {
            f"rt-honest-{assignment}": Attack(
                assignment, f"rt-honest-{assignment}", 0, "the reference answers", MAX[assignment]
            )
        }
        if any(a.klass == 5 and a.assignment == assignment for a in chosen):
            last = f"rt-zz-honest-{assignment}"  # sorted after the attackers: graded after them
            cases[last] = Attack(assignment, last, 0, "the reference answers", MAX[assignment])
        for attack in [a for a in chosen if a.assignment == assignment]:
            answers = {cell: (src(ref[cell]) if callable(src) else src) for cell, src in attack.answers.items()}
            for cell, src in attack.answers.items():
                assert not callable(src) or answers[cell] != ref[cell], f"{attack.student}: {cell} unchanged"
            nb = nbt.with_answers(release, {**ref, **answers})
            for after, cell_type, source in attack.cells:
                _insert_after(nb, after, cell_type, source)
            folder = course / "submitted" / attack.student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            text = nbformat.writes(nb)
            (folder / f"{assignment}.ipynb").write_text(text, encoding="utf-8", errors="surrogatepass")
            for name, content in attack.files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(content)
            cases[attack.student] = attack
        for student, case in cases.items():
            if case.klass == 0:
                nbt.write(
                    nbt.with_answers(release, ref), course / "submitted" / student / assignment / f"{assignment}.ipynb"
                )
        out[assignment] = cases
    return out


LIVE = [
    (re.compile(r"<script\b[^>]*>[^<]*REDTEAM", re.I), "a live <script> of the student"),
    (re.compile(r"<[a-z][^>]*\son[a-z]+\s*=\s*[\"']?[^>]*REDTEAM", re.I), "an event handler of the student"),
    (re.compile(r"href\s*=\s*[\"']?\s*javascript:[^>]*REDTEAM", re.I), "a javascript: link"),
    (re.compile(r"<iframe\b", re.I), "a frame"),
    (re.compile(r"<meta\b[^>]*http-equiv\s*=\s*[\"']?refresh", re.I), "a meta refresh"),  # the page's own CSP is one
    (re.compile(r"<style\b[^>]*>[^<]*REDTEAM_CSS", re.I), "a <style> of the student"),
    (re.compile(r"position\s*:\s*fixed[^>]*>\s*REDTEAM_BANNER", re.I), "a fixed banner of the student"),
    (re.compile(r"<form\b[^>]*REDTEAM_FORM", re.I), "a form of the student"),
]


def live_html(page: str) -> list[str]:
    """What of the student's HTML is still live in a feedback page."""
    found = [why for pattern, why in LIVE if pattern.search(page)]
    if "application/javascript" in page and "REDTEAM_XSS = 9" in page:
        found.append("a Javascript output")
    return found
