"""A student's path in JupyterLab, in Chromium: open an exercise, run it, Validate; then answer it and Validate.

JupyterLab runs on loopback from a temporary copy of what students get (`nbgrader_config.py` and `exercises/`),
with nbgrader's extensions from the course's environment and every Jupyter folder in the temporary directory.
The first assignment is used (override with COURSE_JUPYTERLAB_ASSIGNMENT); its correct answers are the reference
answers from `solutions/`, typed into the answer cells as a student would paste them.
"""

from __future__ import annotations

import os
import secrets as _secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import chromium
import pytest
from helpers import ASSIGNMENTS, ROOT, VENV_BIN

from attention_course import notebooks as nbt
from attention_course.jupyter_env import private_home

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ASSIGNMENT = os.environ.get("COURSE_JUPYTERLAB_ASSIGNMENT") or (ASSIGNMENTS[0] if ASSIGNMENTS else None)
STUB_MESSAGE = "Replace this line with your answer."
SUCCESS = "Success! Your notebook passes all the tests."
SCREENSHOTS = ROOT / "_build" / "screenshots" / "jupyterlab"


def _shot(page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`jupyter lab` serving a student's copy of the course; yields (base URL, token, course folder)."""
    if ASSIGNMENT is None:
        pytest.skip("no assignment in solutions/")
    tmp = tmp_path_factory.mktemp("jupyterlab")
    course = tmp / "course"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(ROOT / "exercises", course / "exercises")
    home = tmp / "home"
    env = dict(os.environ)
    lab = {"JUPYTERLAB_SETTINGS_DIR": f"{home}/lab-settings", "JUPYTERLAB_WORKSPACES_DIR": f"{home}/lab-workspaces"}
    for var, folder in {**private_home(home), **lab}.items():
        Path(folder).mkdir(parents=True, exist_ok=True)
        env[var] = folder
    env["HOME"] = str(home)
    port, token = _free_port(), _secrets.token_hex(16)
    cmd = [
        str(VENV_BIN / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={course}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.port_retries=0",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "jupyterlab.log", "w")
    # Started from the course's root: nbgrader's server extension reads nbgrader_config.py from there.
    server = subprocess.Popen(cmd, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, f"jupyter lab exited:\n{(tmp / 'jupyterlab.log').read_text()[-4000:]}"
            assert time.monotonic() < deadline, (
                f"jupyter lab did not start:\n{(tmp / 'jupyterlab.log').read_text()[-4000:]}"
            )
            time.sleep(0.5)
        yield base, token, course, tmp / "jupyterlab.log"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def tab(lab):
    from playwright.sync_api import sync_playwright

    base, token, course, _ = lab
    with sync_playwright() as p:
        browser = chromium.launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        outside: list[str] = []

        def route(r):
            if r.request.url.startswith(base) or r.request.url.startswith(("data:", "blob:", "ws://127.0.0.1")):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.outside = outside
        yield page
        context.close()
        browser.close()


def _open_notebook(page, lab, cells: int):
    base, token, _, _ = lab
    page.goto(f"{base}/lab/tree/exercises/{ASSIGNMENT}/{ASSIGNMENT}.ipynb?token={token}&reset")
    page.wait_for_function(
        f"document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length === {cells}", timeout=120_000
    )
    news = page.locator(".jp-toast-button", has_text="No")  # "Would you like to get notified about Jupyter news?"
    if news.count():
        news.first.click()
    _wait_idle(page)


def _wait_idle(page, timeout_ms=180_000):
    """The notebook's kernel is started and idle, as the status bar says ("Python 3 (ipykernel) | Idle")."""
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.jp-StatusBar-TextItem')).some(
                 el => /^Python 3.*\\| Idle$/.test(el.textContent.trim()))""",
        timeout=timeout_ms,
    )


def _menu(page, menu: str, item: str):
    page.locator(".lm-MenuBar-item").filter(has=page.get_by_text(menu, exact=True)).first.click()
    page.locator(".lm-Menu-content .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel").get_by_text(
        item, exact=True
    ).first.click()


def _validate(page, name: str) -> str:
    button = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button").first
    button.wait_for(state="visible")
    button.click()
    dialog = page.locator(".jp-Dialog").filter(has_text="Validation Results")
    dialog.wait_for(state="visible", timeout=180_000)
    text = dialog.locator(".jp-Dialog-body").inner_text()
    _shot(page, name)
    dialog.get_by_role("button", name="Ok").click()
    dialog.wait_for(state="hidden")
    return text


def test_untouched_exercise_stops_with_a_clear_message_and_fails_validation(lab, tab):
    page = tab
    nb = nbt.read(ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    _open_notebook(page, lab, len(nb.cells))
    assert page.locator(".jp-NotebookPanel .validate-button").count() == 1, "no Validate button in the toolbar"

    _shot(page, "1-opened")
    _menu(page, "Run", "Run All Cells")
    error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").first
    try:
        error.wait_for(timeout=120_000)
    finally:
        _shot(page, "2-run-all")
    _wait_idle(page)
    text = error.inner_text()
    assert "NotImplementedError" in text and STUB_MESSAGE in text, text[-2000:]

    # The run stopped at the first code that calls the first (untouched) answer; the set-up cells ran fine.
    first_answer = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and nbt.is_answer(c))
    first_call = next(i for i, c in enumerate(nb.cells) if i > first_answer and c.cell_type == "code")
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    assert cells.count() == len(nb.cells)
    raised = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell'))
        .map((cell, i) => cell.querySelector(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']") ? i : -1)
        .filter(i => i >= 0)""")
    assert raised == [first_call], f"cells with an error: {raised}, expected only cell {first_call}"

    report = _validate(page, "3-validate-untouched")
    assert SUCCESS not in report
    assert "NotImplementedError" in report, report[-2000:]
    assert not page.outside, f"JupyterLab requested outside hosts: {page.outside[:5]}"


def test_correct_answers_validate(lab, tab):
    page = tab
    _, _, course, _ = lab
    solution = nbt.read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    answers = nbt.reference_answers(solution)
    nb = nbt.read(ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    for index, cell in enumerate(nb.cells):
        grade_id = nbt.nbgrader_meta(cell).get("grade_id")
        if cell.cell_type == "code" and nbt.is_answer(cell):
            editor = cells.nth(index).locator(".cm-content")
            editor.scroll_into_view_if_needed()
            editor.click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(answers[grade_id])
    page.keyboard.press("Escape")

    _menu(page, "Run", "Run All Cells")
    _wait_idle(page)
    page.wait_for_timeout(500)
    _wait_idle(page)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [errors.nth(i).inner_text() for i in range(errors.count())]
    assert not [t for t in tracebacks if "Error" in t], tracebacks

    report = _validate(page, "4-validate-answered")  # saves the notebook, then validates the file
    assert SUCCESS in report, report[-3000:]
    saved = nbt.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for grade_id, cell in nbt.answer_cells(saved).items():
        assert cell.source.strip() == answers[grade_id].strip(), f"{grade_id} was not saved as typed"
