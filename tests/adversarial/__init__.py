"""An adversarial class for `make grade`: hostile and broken submissions of attention-pooling (10 points:
softmax_matches_torch 3, softmax_is_stable 1, dot_product_scores_matches_matmul 3,
attention_pooling_matches_weighted_sum 3), each with the exact score and status it must get and a piece of the
reason the summary must give.

Built from the released exercise and the reference answers (like tests/test_autograde_class.py), written into
`<course>/submitted/`. Probes (reads of solutions/, the gradebook, other students, the network; writes to the
gradebook) are written so that *success* would earn points: an exact lower score proves the sandbox held.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import nbformat

from attention_course import notebooks as nbt

ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"


@dataclass
class Case:
    score: float
    status: str  # graded | unreadable | missing | no submission
    reason: str = ""  # a piece of the reason the summary gives
    assignment: str = ASSIGNMENT  # the assignment the submission is for (tests/adversarial/expectations.py, escapes.py)


WRONG_SOFTMAX = "def softmax(x, dim=-1):\n    e = torch.exp(x - x.max())\n    return e / e.sum()\n"
WRONG_DOT = "def dot_product_scores(queries, keys):\n    return queries @ keys.T\n"
WRONG_POOL = "def attention_pooling(weights, values):\n    return torch.bmm(weights, values)\n"
ZERO_DOT = "def dot_product_scores(queries, keys):\n    return torch.zeros(*queries.shape[:-1], keys.shape[-2])\n"
ZERO_POOL = "def attention_pooling(weights, values):\n    return torch.zeros(*weights.shape[:-1], values.shape[-1])\n"


def _code(source: str):
    return nbformat.v4.new_code_cell(source)


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if nbt.nbgrader_meta(c).get("grade_id") == grade_id)


def build(course: Path, root: Path, probe_port: int) -> dict[str, Case]:
    """Write every adversarial submission under course/submitted; return student -> expected outcome."""
    release = nbt.read(root / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(root / "solutions" / ASSIGNMENT / NB))
    cases: dict[str, Case] = {}

    def folder(student: str) -> Path:
        path = course / "submitted" / student / ASSIGNMENT
        path.mkdir(parents=True, exist_ok=True)
        return path

    def put(student: str, nb, case: Case, name: str = NB) -> None:
        nbt.write(nb, folder(student) / name)
        cases[student] = case

    def answered(**answers):
        return nbt.with_answers(release, {**ref, **answers})

    def probed(probe: str, check: str, cell: str, wrong: str) -> str:
        """An answer that runs `probe` and is right only if `check()` succeeded (the attack worked)."""
        indent = lambda code: "\n".join("    " + line for line in code.splitlines())
        return f"{probe}if {check}():\n{indent(ref[cell])}\nelse:\n{indent(wrong)}\n"

    put("reference", answered(), Case(10, "graded", "all tests passed"))
    put("blank", release, Case(0, "graded", "NotImplementedError"))
    # --- files that are not gradable notebooks
    (folder("malformed-json") / NB).write_text('{"cells": [ {"cell_type": "code", ')
    cases["malformed-json"] = Case(0, "unreadable", "malformed JSON")
    (folder("not-a-notebook") / NB).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    cases["not-a-notebook"] = Case(0, "unreadable", "not a notebook")
    (folder("json-not-notebook") / NB).write_text(json.dumps({"hello": "world"}))
    cases["json-not-notebook"] = Case(0, "unreadable", "not a notebook")
    (folder("empty-file") / NB).write_bytes(b"")
    cases["empty-file"] = Case(0, "unreadable", "empty file")
    put("empty-notebook", nbformat.v4.new_notebook(), Case(0, "unreadable", "empty notebook"))
    (folder("missing-notebook") / "notes.txt").write_text("I forgot to attach it\n")
    cases["missing-notebook"] = Case(0, "missing", f"missing {NB}")
    put("misnamed", answered(), Case(10, "graded", "misnamed"), name="Attention Pooling (1).ipynb")
    (folder("link-to-solutions") / NB).symlink_to(course / "solutions" / ASSIGNMENT / NB)
    cases["link-to-solutions"] = Case(0, "unreadable", "link")
    # --- code that loops, exits, crashes, floods
    put(
        "infinite-loop",
        answered(attention_pooling="def attention_pooling(weights, values):\n    while True:\n        pass\n"),
        Case(7, "graded", "timed out"),
    )
    nb = answered()
    nb.cells.insert(_index(nb, "softmax") + 1, _code("import sys\nsys.exit(0)"))
    put("sys-exit", nb, Case(10, "graded", "all tests passed"))
    put(
        "os-exit",
        answered(dot_product_scores=ref["dot_product_scores"] + "\nimport os\nos._exit(0)\n"),
        Case(4, "graded", "kernel died"),
    )
    put(
        "segfault",
        answered(
            attention_pooling=ref["attention_pooling"] + "\nimport os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
        ),
        Case(7, "graded", "kernel died"),
    )
    nb = answered()
    nb.cells.insert(
        _index(nb, "softmax") + 1, _code("print('x' * (64 * 2**20))\nfor i in range(2000):\n    print(i, 'y' * 1000)")
    )
    put("huge-output", nb, Case(10, "graded", "output truncated"))
    nb = answered()
    nb.cells.insert(
        _index(nb, "softmax") + 1,
        _code(
            "import os, time\nkids = 0\ntry:\n    for _ in range(2000):\n        if os.fork() == 0:\n"
            "            time.sleep(600)\n            os._exit(0)\n        kids += 1\nexcept OSError as e:\n"
            "    print('stopped after', kids, e)"
        ),
    )
    # full marks, and flagged: processes started by answer code are a way around the in-kernel checks
    put("fork-bomb", nb, Case(10, "graded", "flagged for review"))
    nb = answered()
    nb.cells.insert(
        _index(nb, "softmax") + 1, _code("import torch\nbig = torch.empty(40 * 2**30, dtype=torch.uint8)\nbig.fill_(1)")
    )
    put("memory-hog", nb, Case(10, "graded", "all tests passed"))
    # --- edited structure: tests deleted or rewritten, metadata and points changed
    nb = answered()
    nb.cells = [c for c in nb.cells if not nbt.is_test(c)]
    put("deleted-tests", nb, Case(10, "graded", "restored"))
    nb = answered(softmax=WRONG_SOFTMAX)
    for cell in nb.cells:
        if nbt.is_test(cell):
            cell.source = "pass"
    put("edited-tests", nb, Case(6, "graded", "restored"))
    nb = answered(softmax=WRONG_SOFTMAX)
    for cell in nb.cells:
        meta = nbt.nbgrader_meta(cell)
        if meta.get("grade"):
            meta["points"] = 100
    nb.cells.insert(3, _code("print('give me points')"))
    nb.cells[3].metadata["nbgrader"] = {
        "grade": True,
        "grade_id": "bonus",
        "points": 50,
        "locked": True,
        "solution": False,
        "schema_version": 3,
        "task": False,
    }
    put("changed-points", nb, Case(6, "graded", "softmax_matches_torch"))
    nb = answered(dot_product_scores=WRONG_DOT)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    put("metadata-stripped", nb, Case(7, "graded", "dot_product_scores_matches_matmul"))
    nb = answered(attention_pooling=WRONG_POOL)
    nb.cells = nb.cells + [copy.deepcopy(nb.cells[_index(nb, "attention_pooling")])]
    nb.cells[-1].source = ref["attention_pooling"]
    nb.cells[-1]["id"] = "my-second-try"
    put("duplicated-answer", nb, Case(7, "graded", "attention_pooling_matches_weighted_sum"))
    # --- tampering with the judges (all with wrong answers: they earn what the code earns, and are flagged for
    # review where the static scan sees them; the scan never sets a score)
    put(
        "patch-assert-close",
        answered(softmax=WRONG_SOFTMAX + "\nimport torch\ntorch.testing.assert_close = lambda *a, **k: None\n"),
        Case(6, "graded", "flagged for review"),
    )
    nb = answered(dot_product_scores=ZERO_DOT)
    nb.cells.insert(
        2,
        _code(
            "import numpy as np\nimport torch\nt = torch\nt.equal = lambda a, b: True\n"
            "t.testing.assert_close = lambda *a, **k: None\nnp.allclose = lambda *a, **k: True"
        ),
    )
    put("patch-alias", nb, Case(7, "graded", "t.equal"))
    nb = answered(softmax=WRONG_SOFTMAX)
    nb.cells.insert(
        2,
        _code(
            "ip = get_ipython()\nip.input_transformers_cleanup.append(lambda lines: "
            "['pass\\n'] if any('assert' in l for l in lines) else lines)"
        ),
    )
    put("ipython-transformer", nb, Case(6, "graded", "get_ipython"))
    put(
        "obfuscated-patch",
        answered(
            attention_pooling=ZERO_POOL + "\nsetattr(getattr(__import__('torch'), 'testing'), 'assert_close', print)\n"
        ),
        Case(7, "graded", "__import__"),
    )
    put(
        "torch-library",
        answered(softmax=WRONG_SOFTMAX + "\nimport torch\nlib = torch.library.Library('aten', 'IMPL')\n"),
        Case(6, "graded", "library"),
    )
    nb = answered(softmax=WRONG_SOFTMAX)
    nb.cells.insert(2, _code("import helpers"))
    put("patching-module", nb, Case(6, "graded", "helpers.py"))
    (folder("patching-module") / "helpers.py").write_text(
        "import torch\ntorch.testing.assert_close = lambda *a, **k: None\n"
    )
    (folder("patching-module") / "sitecustomize.py").write_text("import builtins\nbuiltins.AssertionError = Warning\n")
    from adversarial.attacks import against_the_judge, attacks, honest

    attacks(put, answered, folder, _code, _index)
    honest(put, answered, folder, _code, _index)
    against_the_judge(put, answered, release)
    # --- probes: success would make the answer right; exact scores prove they failed
    targets = [
        course / "solutions" / ASSIGNMENT / NB,
        course / "gradebook.db",
        course / "submitted" / "reference" / ASSIGNMENT / NB,
        Path("../../reference") / ASSIGNMENT / NB,
        Path("../../../solutions") / ASSIGNMENT / NB,
        Path("/proc/1/root") / str(course).lstrip("/") / "solutions",
    ]
    probe = (
        "def _can_read():\n    import os\n    for p in %r:\n        try:\n"
        "            with open(p, 'rb') as fh:\n                fh.read(10)\n            return True\n"
        "        except OSError:\n            pass\n        try:\n            os.listdir(p)\n"
        "            return True\n        except OSError:\n            pass\n    return False\n\n"
        % [str(t) for t in targets]
    )
    put(
        "reads-solutions",
        answered(softmax=probed(probe, "_can_read", "softmax", WRONG_SOFTMAX)),
        Case(6, "graded", "softmax_matches_torch"),
    )
    net = (
        "def _online():\n    import socket, urllib.request\n    for host, port in [('127.0.0.1', %d), "
        "('1.1.1.1', 53), ('pypi.org', 443)]:\n        try:\n"
        "            socket.create_connection((host, port), timeout=3).close()\n            return True\n"
        "        except OSError:\n            pass\n    return False\n\n" % probe_port
    )
    put(
        "network",
        answered(dot_product_scores=probed(net, "_online", "dot_product_scores", WRONG_DOT)),
        Case(7, "graded", "dot_product_scores_matches_matmul"),
    )
    writes = (
        "def _wrote():\n    import os, sqlite3\n    done = False\n    try:\n"
        "        db = sqlite3.connect(%r, timeout=1)\n"
        "        db.execute('UPDATE grade SET auto_score = 99')\n        db.commit()\n        done = True\n"
        "    except Exception:\n        pass\n"
        "    for p in %r:\n        try:\n            open(p, 'w').write('owned')\n            done = True\n"
        "        except OSError:\n            pass\n    return done\n\n"
        % (
            str(course / "gradebook.db"),
            [
                str(course / "grades.csv"),
                str(course / "submitted" / "blank" / ASSIGNMENT / NB),
                "../../blank/" + ASSIGNMENT + "/" + NB,
            ],
        )
    )
    put(
        "writes-gradebook",
        answered(attention_pooling=probed(writes, "_wrote", "attention_pooling", WRONG_POOL)),
        Case(7, "graded", "attention_pooling_matches_weighted_sum"),
    )
    # a folder in submitted/ with nothing for this assignment, and a roster student who never submitted
    (course / "submitted" / "other-assignment-only" / "some-other-assignment").mkdir(parents=True)
    cases["other-assignment-only"] = Case(0, "no submission", "no submission")
    cases["roster-only"] = Case(0, "no submission", "no submission")
    return cases
