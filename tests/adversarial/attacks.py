"""Attacks on an in-kernel judge, and honest notebooks that a deny-list mistook for attacks.

`attacks`: each submission tries a route around tests that run in the student's kernel (patches through any
store, alias or reflection; lying tensor subclasses and objects; IPython hooks; a C extension compiled at run
time; code in a text file or a UTF-7 helper; frame and history reads) with a *wrong* answer, so any point beyond
what its right parts earn would mean the attack worked. `honest`: correct notebooks written in unusual but
legal ways, which must all earn full marks.
"""

from __future__ import annotations

import base64

from adversarial import ZERO_DOT, ZERO_POOL, Case
from attention_course import notebooks as nbt

# wrong answers of the right shape: they pass a test only if its comparisons are made to lie
ZERO_SOFTMAX = "def softmax(x, dim=-1):\n    return torch.zeros_like(x)\n"
PATCH = (
    "import torch, numpy\n"
    "torch.testing.assert_close = lambda *a, **k: None\n"
    "torch.allclose = torch.equal = lambda *a, **k: True\n"
    "numpy.allclose = lambda *a, **k: True\n"
)


def utf7(text: str) -> str:
    """Python source in UTF-7 with every character base64-encoded: unreadable to a UTF-8 scan."""
    body = base64.b64encode(text.encode("utf-16-be")).decode().rstrip("=")
    return f"# coding: utf-7\n+{body}-\n"


C_SOURCE = (
    "#include <Python.h>\n"
    'static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "evil", NULL, -1, NULL};\n'
    "PyMODINIT_FUNC PyInit_evil(void) {\n"
    '    PyRun_SimpleString("import torch\\ntorch.testing.assert_close = lambda *a, **k: None\\n"\n'
    '                       "torch.allclose = torch.equal = lambda *a, **k: True\\n");\n'
    "    return PyModule_Create(&m);\n"
    "}\n"
)
C_EXTENSION = (
    "import os, subprocess, sys, sysconfig\n"
    f"open('evil.c', 'w').write({C_SOURCE!r})\n"
    "suffix = sysconfig.get_config_var('EXT_SUFFIX')\n"
    "built = subprocess.run(['gcc', '-shared', '-fPIC', '-I', sysconfig.get_paths()['include'], 'evil.c',\n"
    "                        '-o', 'evil' + suffix], capture_output=True, text=True)\n"
    "print('compiled:', built.returncode == 0, built.stderr[-300:])\n"
    "sys.path.insert(0, os.getcwd())\n"
    "import evil\n"
    "import torch\n"
    "print('patched here:', torch.equal(torch.zeros(1), torch.ones(1)))\n"
)

LIAR_TENSOR = (
    "import torch\n"
    "class _Liar(torch.Tensor):\n"
    "    # zeros whose every comparison says 'equal' (assert_close compares through isclose)\n"
    "    @classmethod\n"
    "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
    "        name = getattr(func, '__name__', '')\n"
    "        if name in ('allclose', 'equal'):\n"
    "            return True\n"
    "        if name in ('isclose', 'eq', '__eq__'):\n"
    "            other = args[1].shape if isinstance(args[1], torch.Tensor) else ()\n"
    "            return torch.ones(torch.broadcast_shapes(args[0].shape, other), dtype=torch.bool)\n"
    "        with torch._C.DisableTorchFunctionSubclass():\n"
    "            out = func(*args, **(kwargs or {}))\n"
    "        keep = isinstance(out, torch.Tensor) and name not in ('all', 'any')\n"
    "        return out.as_subclass(_Liar) if keep else out\n"
    "def dot_product_scores(queries, keys):\n"
    "    return torch.zeros(*queries.shape[:-1], keys.shape[-2]).as_subclass(_Liar)\n"
)

LIAR_OBJECT = (
    "import torch\n"
    "class _Anything:\n"
    "    def __init__(self, shape):\n"
    "        self.shape = shape\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    __ne__ = lambda self, other: False\n"
    "    def __bool__(self):\n"
    "        return True\n"
    "    def __getattr__(self, name):\n"
    "        return lambda *a, **k: self\n"
    "def attention_pooling(weights, values):\n"
    "    return _Anything(torch.Size([*weights.shape[:-1], values.shape[-1]]))\n"
)

SHELL_HOOKS = (
    "ip = get_ipython()\n"
    "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
    "ip.events.register('post_run_cell', lambda result: setattr(result, 'error_in_exec', None))\n"
)

FRAME_THIEF = (
    "import ast, linecache, sys, torch\n"
    "def attention_pooling(weights, values):\n"
    "    # read the test from the frames above: a variable named `expected`, or the other side of the\n"
    "    # assert_close on the calling line, evaluated where the test runs (a test in this process has both)\n"
    "    frame = sys._getframe(1)\n"
    "    while frame is not None:\n"
    "        found = frame.f_locals.get('expected')\n"
    "        if isinstance(found, torch.Tensor) and found.shape[:-1] == weights.shape[:-1]:\n"
    "            return found.clone()\n"
    "        try:\n"
    "            tree = ast.parse(linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip())\n"
    "        except SyntaxError:\n"
    "            tree = ast.Module(body=[], type_ignores=[])\n"
    "        for node in ast.walk(tree):\n"
    "            if isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'assert_close' \\\n"
    "                    and len(node.args) == 2:\n"
    "                try:\n"
    "                    return eval(compile(ast.Expression(node.args[1]), 'thief', 'eval'),\n"
    "                                frame.f_globals, frame.f_locals)\n"
    "                except Exception:\n"
    "                    pass\n"
    "        frame = frame.f_back\n"
    "    return torch.zeros(*weights.shape[:-1], values.shape[-1])\n"
)

# Writes everything the kernel can see of its own inputs, history and frames to leak-probe.txt (in the sandbox's
# copy of the submission folder, which the test reads afterwards) and prints it base64-encoded.
HISTORY_LEAK = (
    "import base64, json, os, sys\n"
    "def _dump(tag):\n"
    "    seen = {'inputs': list(_ih), 'out': repr(Out)[:20000], 'names': sorted(globals())}\n"
    "    frames, f = [], sys._getframe()\n"
    "    while f is not None:\n"
    "        frames.append(repr(f.f_locals)[:5000])\n"
    "        f = f.f_back\n"
    "    seen['frames'] = frames\n"
    "    text = json.dumps(seen)\n"
    "    with open('leak-probe.txt', 'a') as fh:\n"
    "        fh.write(tag + '\\n' + text + '\\n')\n"
    "    print(tag, base64.b64encode(text.encode()).decode()[:30000])\n"
    "_dump('after-answer')\n"
)

TEST_CELLS = (
    "softmax_matches_torch",
    "softmax_is_stable",
    "dot_product_scores_matches_matmul",
    "attention_pooling_matches_weighted_sum",
)


# Each of these earns full marks when its tests run in the student's own kernel (plain nbgrader): proved by
# tests/test_grading.py::test_the_attacks_win_against_an_in_kernel_judge.
WIN_IN_KERNEL = (
    "for-target-patch",
    "with-target-patch",
    "comprehension-patch",
    "subscript-alias-patch",
    "lying-tensor-subclass",
    "shell-hooks",
    "compiled-extension",
    "runpy-text-file",
    "utf7-helper",
    "frame-thief",
    "patch-assert-close",
    "patch-alias",
    "ipython-transformer",
    "obfuscated-patch",
    "patching-module",
)


def attacks(put, answered, folder, code, index) -> None:
    put(
        "for-target-patch",
        answered(
            softmax=ZERO_SOFTMAX + "import torch\nfor torch.testing.assert_close in [lambda *a, **k: None]:\n    pass\n"
        ),
        Case(6, "graded", "softmax_matches_torch"),
    )
    put(
        "with-target-patch",
        answered(
            dot_product_scores=ZERO_DOT + "import contextlib, torch\nwith contextlib."
            "nullcontext(lambda *a, **k: True) as torch.equal:\n    pass\n"
            "with contextlib.nullcontext(lambda *a, **k: None) as torch.testing.assert_close:"
            "\n    pass\n"
        ),
        Case(7, "graded", "dot_product_scores_matches_matmul"),
    )
    put(
        "comprehension-patch",
        answered(
            attention_pooling=ZERO_POOL + "import torch\n[0 for torch.testing.assert_close in [lambda *a, **k: None]]\n"
        ),
        Case(7, "graded", "attention_pooling_matches_weighted_sum"),
    )
    put(
        "subscript-alias-patch",
        answered(
            softmax=ZERO_SOFTMAX + "import torch\nm = [torch.testing][0]\n"
            "setattr(m, 'assert_' + 'close', lambda *a, **k: None)\n"
        ),
        Case(6, "graded", "softmax_matches_torch"),
    )
    put(
        "lying-tensor-subclass",
        answered(dot_product_scores=LIAR_TENSOR),
        Case(7, "graded", "dot_product_scores_matches_matmul"),
    )
    put(
        "lying-object",
        answered(attention_pooling=LIAR_OBJECT),
        Case(7, "graded", "attention_pooling_matches_weighted_sum"),
    )
    nb = answered(softmax=ZERO_SOFTMAX)
    nb.cells.insert(2, code(SHELL_HOOKS))
    put("shell-hooks", nb, Case(6, "graded", "softmax_matches_torch"))
    nb = answered(dot_product_scores=ZERO_DOT)
    nb.cells.insert(2, code(C_EXTENSION))
    put("compiled-extension", nb, Case(7, "graded", "dot_product_scores_matches_matmul"))
    nb = answered(attention_pooling=ZERO_POOL)
    nb.cells.insert(2, code("import runpy\nrunpy.run_path('notes.txt')"))
    put("runpy-text-file", nb, Case(7, "graded", "attention_pooling_matches_weighted_sum"))
    (folder("runpy-text-file") / "notes.txt").write_text(PATCH)
    nb = answered(softmax=ZERO_SOFTMAX)
    nb.cells.insert(2, code("import helper7"))
    put("utf7-helper", nb, Case(6, "graded", "softmax_matches_torch"))
    (folder("utf7-helper") / "helper7.py").write_text(utf7(PATCH))
    put(
        "frame-thief",
        answered(attention_pooling=FRAME_THIEF),
        Case(7, "graded", "attention_pooling_matches_weighted_sum"),
    )
    # an error message built from the kernel's history, and dumps after every test cell
    nb = answered(
        dot_product_scores="import base64\ndef dot_product_scores(queries, keys):\n"
        "    raise ValueError(base64.b64encode(repr(_ih).encode()).decode())\n"
    )
    for grade_id in TEST_CELLS:
        nb.cells.insert(index(nb, grade_id) + 1, code(f"_dump('after {grade_id}')"))
    nb.cells.insert(index(nb, "softmax") + 1, code(HISTORY_LEAK))
    put("history-leak", nb, Case(7, "graded", "dot_product_scores_matches_matmul"))


# Against the judge itself: the forbidden-built-in check is the one check that runs inside the kernel (the
# judge asks the agent to apply `checks.forbid` around the student's call), so the student switches it off
# there and answers with the built-in softmax. The values are right, so the judge cannot see it: this is the
# documented limit of the design (grading README, threat model). What must hold: the static scan flags it for
# the instructor's review, in the summary and grades.csv.
FORBID_BYPASS = (
    "import contextlib\n"
    "import attention_course.checks as checks\n"
    "checks.forbid = lambda *names, **kwargs: contextlib.nullcontext()\n"
    "def softmax(x, dim=-1):\n"
    "    return torch.softmax(x, dim=dim)\n"
)


# Against the judge link (runner.py): the judge's unix socket lies beside the kernel's connection file (whose
# path is in the kernel's argv), and the judge accepts the first connection when a test cell starts. The student
# connects first, from an answer cell, and a thread of theirs answers every request of the judge with "True"
# and the traffic it was sent: points without the work, and the judge's inputs. Every answer is otherwise the
# untouched stub, so whatever the squatter does the student must score 0: the judge believes data only, and a
# reply that is not what the test asked for fails the test.
SOCKET_SQUATTER = (
    "import os, socket, sys, threading\n"
    "from attention_course.grading import agent as _agent, wire as _wire\n"
    "_conn = sys.argv[sys.argv.index('-f') + 1] if '-f' in sys.argv else ''\n"
    "_path = os.path.join(os.path.dirname(_conn), 'judge.sock')\n"
    "def _squat():\n"
    "    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "    sock.connect(_path)\n"
    "    while True:\n"
    "        try:\n"
    "            message, frames = _wire.recv(sock)\n"
    "        except Exception:\n"
    "            return\n"
    "        if message.get('op') == 'end':\n"
    "            return\n"
    "        with open('squatted.txt', 'a') as fh:\n"
    "            fh.write(repr(message)[:500] + '\\n')\n"
    "        _agent._reply(sock, True)\n"
    "if os.path.exists(_path):\n"
    "    threading.Thread(target=_squat, daemon=True).start()\n"
    "def attention_pooling(weights, values):\n"
    "    raise NotImplementedError()\n"
)


def against_the_judge(put, answered, release) -> None:
    # the agent took its own reference to `forbid` before the student's cells ran: rebinding the module's name
    # changes nothing there, so torch.softmax is refused (issue 18), and the scan flags the rebinding
    put("forbid-bypass", answered(softmax=FORBID_BYPASS), Case(6, "graded", "flagged for review"))
    squatter = nbt.with_answers(release, {"attention_pooling": SOCKET_SQUATTER})
    put("socket-squatter", squatter, Case(0, "graded", "softmax_matches_torch"))


def honest(put, answered, folder, code, index) -> None:
    full = Case(10, "graded", "")
    nb = answered()
    nb.cells.insert(
        index(nb, "softmax") + 1,
        code(
            "x = torch.randn(3, 4)\nprint('passes assert_close:', torch.testing.assert_close(softmax(x), "
            "torch.softmax(x, -1)) is None)\nprint('allclose too:', torch.allclose(softmax(x), torch.softmax(x, -1)))"
        ),
    )
    put("honest-mentions-assert-close", nb, full)
    nb = answered()
    nb.cells.insert(
        index(nb, "softmax") + 1,
        code("import sys\nmodules = sorted(m for m in sys.modules if m.startswith('torch.nn'))[:3]\nprint(modules)"),
    )
    put("honest-named-modules", nb, full)
    put(
        "honest-class-reads",
        answered(
            softmax=(
                "def softmax(x, dim=-1):\n    assert x.__class__.__name__ == 'Tensor', x.__class__\n"
                "    e = torch.exp(x - x.amax(dim=dim, keepdim=True))\n    return e / e.sum(dim=dim, keepdim=True)\n"
            )
        ),
        full,
    )
    put(
        "honest-lambda",
        answered(
            softmax=(
                "softmax = lambda x, dim=-1: (lambda e: e / e.sum(dim, keepdim=True))(torch.exp(x - x.amax(dim, "
                "keepdim=True)))\n"
            )
        ),
        full,
    )
    put(
        "honest-callable-object",
        answered(
            attention_pooling=(
                "class _Pooling:\n    '''A callable object instead of a function.'''\n"
                "    def __call__(self, weights, values):\n"
                "        return torch.einsum('...qk,...kv->...qv', weights, values)\n\nattention_pooling = _Pooling()\n"
            )
        ),
        full,
    )
    put(
        "honest-partial",
        answered(
            dot_product_scores=(
                "import functools\n\ndot_product_scores = functools.partial(torch.einsum, '...qd,...kd->...qk')\n"
            )
        ),
        full,
    )
    put(
        "honest-decorator",
        answered(
            softmax=(
                "import functools\n\ndef keeps_dtype(fn):\n    @functools.wraps(fn)\n    def wrapper(x, *args, **kwargs):\n"
                "        out = fn(x, *args, **kwargs)\n        assert out.dtype == x.dtype and out.shape == x.shape\n"
                "        return out\n    return wrapper\n\n@keeps_dtype\ndef softmax(x, dim=-1):\n"
                "    shifted = x - x.max(dim=dim, keepdim=True).values\n    return shifted.exp() / shifted.exp().sum(dim, "
                "keepdim=True)\n"
            )
        ),
        full,
    )
    put(
        "honest-globals-metaprogramming",
        answered(
            attention_pooling=(
                "for _name, _equation in [('attention_pooling', '...qk,...kv->...qv')]:\n"
                "    globals()[_name] = (lambda eq: (lambda a, b: torch.einsum(eq, a, b)))(_equation)\n"
            )
        ),
        full,
    )
    put("honest-helper-module", answered(softmax="from mymath import softmax\n"), full)
    (folder("honest-helper-module") / "mymath.py").write_text(
        "import torch\n\n\ndef softmax(x, dim=-1):\n    m = x.amax(dim=dim, keepdim=True)\n"
        "    e = torch.exp(x - m)\n    return e / e.sum(dim=dim, keepdim=True)\n"
    )
    nb = answered()
    nb.cells.insert(
        index(nb, "softmax") + 1,
        code(
            "# notes: get_ipython, __main__, __dict__, transformers, allclose are just words here\n"
            "print('I read about get_ipython() and __torch_function__ today')\nimport inspect\n"
            "print(inspect.signature(softmax))"
        ),
    )
    put("honest-strings-and-inspect", nb, full)
    put(
        "honest-setattr-vars",
        answered(
            attention_pooling=(
                "class _Box:\n    pass\n\n_box = _Box()\nsetattr(_box, 'fn', lambda weights, values: weights @ values)\n"
                "attention_pooling = vars(_box)['fn']\n"
            )
        ),
        full,
    )
    put(
        "honest-loops",
        answered(
            dot_product_scores=(
                "def dot_product_scores(queries, keys):\n    out = torch.empty(*queries.shape[:-1], keys.shape[-2])\n"
                "    for j in range(keys.shape[-2]):\n        out[..., j] = (queries * keys[..., j:j + 1, :]).sum(-1)\n"
                "    return out\n"
            )
        ),
        full,
    )
