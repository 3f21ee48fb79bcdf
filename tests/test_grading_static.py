"""The grader's static tamper check flags no honest answer: every reference answer and every simulated
submission (correct and wrong) of every assignment passes it, and the known tampering routes are flagged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import ASSIGNMENTS, ROOT
from submissions import for_assignment

sys.path.insert(0, str(Path(__file__).parent))

from attention_course import notebooks as nbt
from attention_course.grading.static_scan import tamper_findings


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_honest_answers_are_not_flagged(assignment):
    source = nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    module = for_assignment(assignment)
    answers = [(f"reference {g}", a) for g, a in nbt.reference_answers(source).items()]
    answers += [(f"CORRECT {g}", a) for g, a in module.CORRECT.items()]
    answers += [(f"WRONG {name}", src) for name, (_, src, _) in module.WRONG.items()]
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    answers += [
        (f"exercise cell {c.get('id')}", c.source)
        for c in release.cells
        if c.cell_type == "code" and not nbt.is_test(c) and not nbt.nbgrader_meta(c).get("locked")
    ]  # locked cells: the source's
    flagged = {where: tamper_findings(code, where) for where, code in answers}
    assert not {k: v for k, v in flagged.items() if v}


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.testing.assert_close = lambda *a, **k: None",
        "from torch import testing\ntesting.assert_close = print",
        "import numpy.testing as npt\nnpt.assert_allclose = print",
        "x = torch.testing\nx.assert_close = print",
        "torch.Tensor.__eq__ = lambda a, b: True",
        "get_ipython().events.register('pre_run_cell', f)",
        "setattr(getattr(__import__('torch'), 'testing'), 'assert_close', print)",
        "t = torch.testing\nsetattr(t, 'assert_close', print)",
        "setattr(torch, 'allclose', lambda *a: True)",
        "exec('torch.equal = lambda a, b: True')",
        "import builtins\nbuiltins.AssertionError = Warning",
        "vars(torch.testing)['assert_close'] = print",
        "sys.modules['torch'].testing.assert_close = print",
        "object.__setattr__(torch.testing, 'assert_close', print)",
        "%load_ext evil",
        "!curl http://example.com",
    ],
)
def test_tampering_is_flagged(code):
    assert tamper_findings(code, "cell")


# every way around the in-kernel checks (forbidden built-ins, memory), each on its own (issue 18, class 2)
ESCAPES = {
    "threading": "import threading\nt = threading.Thread(target=lambda: torch.softmax(x, -1))",
    "thread-from": "from threading import Thread\nThread(target=print).start()",
    "_thread": "import _thread\n_thread.start_new_thread(print, ())",
    "futures": "from concurrent.futures import ThreadPoolExecutor\npool = ThreadPoolExecutor(2)",
    "futures-module": "import concurrent.futures as cf\ncf.ThreadPoolExecutor(1).submit(print)",
    "multiprocessing": "import multiprocessing\nmultiprocessing.Pool(2)",
    "torch-multiprocessing": "import torch.multiprocessing as mp\nmp.spawn(print)",
    "subprocess": "import subprocess\nsubprocess.run(['python', '-c', 'print(1)'])",
    "fork": "import os\npid = os.fork()",
    "os-system": "import os\nos.system('python -c 1')",
    "asyncio": "import asyncio\nasyncio.to_thread(print)",
    "jit-fork": "fut = torch.jit.fork(torch.softmax, x, -1)",
    "pop-dispatch-mode": "from torch.utils._python_dispatch import _pop_mode\n_pop_mode()",
    "pop-dispatch-mode-module": "import torch.utils._python_dispatch as pd\npd._pop_mode()",
    "disable-modes": "from torch.utils import _python_dispatch as d\nwith d._disable_current_modes():\n    pass",
    "pop-function-mode": "torch._C._pop_torch_function_stack()",
    "set-function-mode": "t = torch\nt._C._set_torch_function_mode(None)",
    "disable-torch-function": "with torch._C.DisableTorchFunction():\n    pass",
    "disable-torch-function-alias": "from torch._C import DisableTorchFunction as D\nwith D():\n    pass",
    "disabled-impl": "__torch_function__ = torch._C._disabled_torch_function_impl",
    "overrides": "from torch.overrides import TorchFunctionMode",
    "overrides-attr": "stack = torch.overrides._get_current_function_mode_stack()",
    "decompositions": "from torch._decomp import decomposition_table",
    "refs": "y = torch._refs.softmax(x, -1)",
    "checks-import": "import attention_course.checks as c\nc.forbid = None",
    "checks-from": "from attention_course import checks\nchecks.forbid = lambda *a, **k: None",
    "checks-from-name": "from attention_course.checks import forbid",
    "agent": "from attention_course.grading import agent\nagent._forbid = print",
    "agent-by-string": "m = sys.modules['attention_course.grading.agent']",
    "course-by-getattr": "getattr(x, 'attention_course')",
    "module-rebind": "import torch.nn.functional as G\nG.softmax = print",
    "from-import-rebind": "from torch.nn import functional\nfunctional.scaled_dot_product_attention = print",
    "from-module-object-rebind": "from torch import nn\nsetattr(nn.functional, 'softmax', print)",
    "setattr-computed": "name = 'soft' + 'max'\nsetattr(torch, name, print)",
    "getattr-computed": "name = 'soft' + 'max'\nf = getattr(torch.nn.functional, name)",
    "getattr-private": "f = getattr(torch, '_C')",
    "exec": "exec('y = 1')",
    "eval": "y = eval('1 + 1')",
    "compile": "code = compile('y = 1', 'x', 'exec')",
    "__import__": "t = __import__('torch')",
    "importlib": "import importlib\nt = importlib.import_module('torch')",
    "globals-write": "globals()['softmax'] = print",
    "vars-write": "vars(torch)['softmax'] = print",
    # numpy's work is no torch operator, and a buffer allocated before the call hides it from the memory bound
    "numpy-import": "import numpy as np\nscratch = np.ones(10**7, np.float32)",
    "numpy-from": "from numpy import matmul",
    "tensor-to-numpy": "s = queries.numpy() @ keys.numpy().transpose(0, 2, 1)",
    "array-protocol": "a = queries.__array__()",
    "scipy": "from scipy.special import softmax",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_ways_around_the_in_kernel_checks_are_flagged(name):
    assert tamper_findings(ESCAPES[name], "cell"), ESCAPES[name]


def test_honest_students_of_the_corpus_are_not_newly_flagged(tmp_path):
    """The honest notebooks of tests/adversarial (attacks.honest) get the same flags as before the escape rules:
    none, except the three words or reads each of them was already flagged for (listed here)."""
    import shutil

    from adversarial import ASSIGNMENT, build

    from attention_course.grading import assemble as asm

    (tmp_path / "solutions").mkdir()
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, tmp_path / "solutions" / ASSIGNMENT)
    cases = build(tmp_path, ROOT, 9)
    source = nbt.read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    already = {  # flagged before issue 18 for what they read or name (score unaffected)
        "honest-class-reads": {"`.__class__`"},
        "honest-globals-metaprogramming": {"`globals`"},
        "honest-mentions-assert-close": {"string naming internals"},
        "honest-named-modules": {"`modules`", "`.modules`"},
        "honest-setattr-vars": {"`vars`"},
        "honest-strings-and-inspect": {"`inspect`", "string naming internals"},
    }
    honest = sorted(s for s in cases if s.startswith("honest-"))
    assert len(honest) == 12
    for student in honest:
        folder = tmp_path / "submitted" / student / ASSIGNMENT
        nb = asm.assemble(source, nbt.read(folder / f"{ASSIGNMENT}.ipynb")).nb
        findings = [
            f
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and cell.metadata.get("grading", {}).get("origin") in ("answer", "student")
            for f in tamper_findings(cell.source, f"cell {i}")
        ]
        findings += [f for p in folder.glob("*.py") for f in tamper_findings(p.read_text(), p.name)]
        new = [f for f in findings if not any(word in f for word in already.get(student, ()))]
        assert not new, (student, new)


def test_a_provided_helper_copied_into_an_answer_is_flagged():
    """multi-head provides dot_product_attention (scoring-functions is past due there): a scoring-functions answer
    that is that code with other names is flagged for review; no reference or simulated answer is."""
    import textwrap

    from attention_course.grading import copies

    source = ROOT / "solutions"
    provided = copies.provided_elsewhere(source, "scoring-functions")
    assert list(provided.values()) == ["multi-head's provided `dot_product_attention`"]
    helper = next(
        c.source
        for c in nbt.read(source / "multi-head" / "multi-head.ipynb").cells
        if "def dot_product_attention" in c.source
    )
    renamed = (
        helper.replace("queries", "q").replace("keys", "k").replace("values", "v").replace("logits", "s")
        .replace("dot_product_attention", "attend")
    )  # fmt: skip
    found = copies.copy_findings(renamed, "DotProductAttention", provided)
    assert found and "`attend` is multi-head's provided `dot_product_attention`" in found[0], found
    # the same computation written another way is the student's own
    own = textwrap.dedent("""\
        def attend(q, k, v, lens=None, drop=None):
            s = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
            if lens is not None:
                s = s.masked_fill(torch.arange(k.shape[1]) >= lens.reshape(-1, 1, 1), -1e6)
            w = torch.softmax(s, dim=-1)
            return (w if drop is None else drop(w)) @ v, w
        """)
    assert copies.copy_findings(own, "DotProductAttention", provided) == []
    for assignment in ASSIGNMENTS:
        provided = copies.provided_elsewhere(source, assignment)
        module = for_assignment(assignment)
        answers = dict(nbt.reference_answers(nbt.read(source / assignment / f"{assignment}.ipynb")))
        answers |= {f"CORRECT {g}": a for g, a in module.CORRECT.items()}
        answers |= {f"WRONG {name}": src for name, (_, src, _) in module.WRONG.items()}
        flagged = {g: f for g, a in answers.items() if (f := copies.copy_findings(a, g, provided))}
        assert not flagged, (assignment, flagged)
