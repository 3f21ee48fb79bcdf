"""Every released exercise runs on its own, in a Jupyter kernel that has torch and nothing of the course.

A student downloads `exercises/<id>/<id>.ipynb` from the site into an empty folder and opens it in a Python where
`pip install torch` (and Jupyter) is all that was installed. Each notebook is copied alone into an empty
temporary folder and executed with nbclient in such a kernel: `python -I` with an allow-list import filter
(`tests/torch_only.py`), a scratch HOME and no PYTHONPATH, so `attention_course`, `d2l`, `nbgrader` (and numpy,
matplotlib, ...) cannot be imported although the course's virtual environment holds them. The first test proves
that about the kernel itself. Then, per assignment:

- untouched, the first cell that fails is the student's `NotImplementedError`, raised by the first answer cell
  or the cells between it and the next answer (its demo and tests): nothing fails before the student's code;
- with the reference answers filled in, every cell runs without an error.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest
from helpers import ASSIGNMENTS, ROOT
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from torch_only import clean_env, kernel_dir

from attention_course import notebooks as nbt

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return kernel_dir(tmp_path_factory.mktemp("torch-only-kernel"))


def execute(nb, folder, kernels, allow_errors):
    """Run `nb` in the torch-only kernel with `folder` as working directory; returns the executed notebook."""
    home = folder.parent / f"{folder.name}-home"
    home.mkdir()
    km = KernelManager(kernel_name="torch-only", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(
        nb,
        km=km,
        timeout=300,
        allow_errors=allow_errors,
        kernel_name="torch-only",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=clean_env(home))
    return nb


def errors(nb) -> list[tuple[int, dict]]:
    return [
        (i, out)
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def test_the_kernel_has_torch_and_nothing_of_the_course(tmp_path, kernels):
    probe = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(source)
            for source in (
                "import torch\nprint(torch.__version__)",
                "import importlib.util\nprint(sorted(m for m in ('attention_course', 'd2l', 'nbgrader', 'numpy')"
                " if importlib.util.find_spec(m) is not None))",
                "import attention_course",
                "import d2l",
                "import nbgrader",
                "from attention_course import checks",
            )
        ]
    )
    folder = tmp_path / "probe"
    folder.mkdir()
    nb = execute(probe, folder, kernels, allow_errors=True)
    found = errors(nb)
    assert [i for i, _ in found] == [2, 3, 4, 5], found
    assert all(out["ename"] == "ModuleNotFoundError" for _, out in found), found
    assert nb.cells[1].outputs[0]["text"].strip() == "[]", nb.cells[1].outputs


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_exercise_fails_first_in_the_students_code(assignment, tmp_path, kernels):
    folder = tmp_path / "download"
    folder.mkdir()
    shutil.copy2(ROOT / "exercises" / assignment / f"{assignment}.ipynb", folder)
    nb = execute(nbt.read(folder / f"{assignment}.ipynb"), folder, kernels, allow_errors=True)
    answers = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and nbt.is_answer(cell)]
    found = errors(nb)
    assert found, "the untouched exercise ran without an error"
    index, first = found[0]
    assert first["ename"] == "NotImplementedError", (
        f"cell {index} fails first, with {first['ename']}: {first['evalue'][:300]}"
    )
    following = answers[1] if len(answers) > 1 else len(nb.cells)
    assert answers[0] <= index < following, (
        f"the first error is in cell {index}, not in the first answer (cell {answers[0]}) or the cells after it"
    )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercise_with_the_reference_answers_runs_alone(assignment, tmp_path, kernels):
    folder = tmp_path / "download"
    folder.mkdir()
    shutil.copy2(ROOT / "exercises" / assignment / f"{assignment}.ipynb", folder)
    reference = nbt.reference_answers(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    nb = nbt.with_answers(nbt.read(folder / f"{assignment}.ipynb"), reference)
    try:
        execute(nb, folder, kernels, allow_errors=False)
    except CellExecutionError as error:
        pytest.fail(f"{assignment} with the reference answers fails standalone:\n{str(error)[-3000:]}")
