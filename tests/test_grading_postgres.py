"""The three instructor commands on a PostgreSQL gradebook: `make collect` (Canvas download), `make grade` with
GRADEBOOK_URL naming a real Debian PostgreSQL server started here on 127.0.0.1, killed in the middle and
run again (it resumes, loses nothing, and no score is written twice or wrong), then `make export-grades`."""

from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT, copy_course

from attention_course import notebooks as nbt
from attention_course.grading.sandbox import available

ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.postgres,
    # outside CI a machine without PostgreSQL or bubblewrap skips; in CI (CI=true) these tests must run
    pytest.mark.skipif(not PG_BIN and not os.environ.get("CI"), reason="Debian's postgresql package is not installed"),
    pytest.mark.skipif(available() is not None and not os.environ.get("CI"), reason=f"no sandbox here: {available()}"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (as the `postgres` user when run as root)."""
    bindir = Path(PG_BIN[-1])
    base = Path(tempfile.mkdtemp(prefix="pg-grading-"))
    os.chmod(base, 0o755)
    data, port = base / "data", _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        as_user
        + [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(base / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            as_user + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "gradebook"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run(
            as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


def make(args, env, timeout=1200):
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_collect_grade_export_on_postgres_with_an_interruption(tmp_path, postgres):
    from nbgrader.api import Gradebook

    course = copy_course(tmp_path / "course")
    release = nbt.read(ROOT / "exercises" / ASSIGNMENT / NB)
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / ASSIGNMENT / NB))
    wrong = "def dot_product_scores(queries, keys):\n    return queries @ keys.T\n"
    expected = {"ada": 10.0, "bob": 0.0, "cy": 7.0, "dee": 10.0, "eve": 0.0}  # eve: roster only
    archive = tmp_path / "canvas.zip"
    import nbformat

    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"ada_101_9001_{NB}", nbformat.writes(nbt.with_answers(release, ref)))
        zf.writestr(f"bob_102_9002_{NB}", nbformat.writes(release))
        zf.writestr(
            f"cy_LATE_103_9003_{ASSIGNMENT}-2.ipynb",
            nbformat.writes(nbt.with_answers(release, {**ref, "dot_product_scores": wrong})),
        )
        zf.writestr(f"dee_104_9004_{NB}", nbformat.writes(nbt.with_answers(release, ref)))
        zf.writestr("grades-template.csv", "unplaceable")
    env = {**os.environ, "GRADEBOOK_URL": postgres}
    with Gradebook(postgres) as gb:
        gb.add_student("eve", first_name="Eve", last_name="Absent")
    # 1. collect
    proc = make(["collect", f"ASSIGNMENT={ASSIGNMENT}", f"ZIP={archive}", f"COURSE={course}"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT PLACED  grades-template.csv" in proc.stdout
    # 2. grade, killed (SIGKILL, whole process group) once the first student is done
    cmd = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        "grade",
        f"ASSIGNMENT={ASSIGNMENT}",
        f"COURSE={course}",
        "JOBS=2",
        "GRADE_FLAGS=--no-progress",
    ]
    first = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and first.poll() is None:
        done = list((course / "autograded").glob(f"*/{ASSIGNMENT}/*.grading.json"))
        if any(p.parent.parent.name in expected and p.parent.parent.name != "eve" for p in done):
            break
        time.sleep(0.5)
    assert first.poll() is None, "the first run ended before it could be interrupted"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    proc = make(["grade", f"ASSIGNMENT={ASSIGNMENT}", f"COURSE={course}", "JOBS=2", "GRADE_FLAGS=--no-progress"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    executed = int(proc.stdout.split(" notebook(s) executed")[0].split()[-1])
    assert executed < 4, "the rerun should reuse what the interrupted run finished"
    with Gradebook(postgres) as gb:
        for student, score in expected.items():
            if student == "eve":
                assert student in {s.id for s in gb.students}
                continue
            assert gb.find_submission(ASSIGNMENT, student).score == score, student
    # 3. export
    (course / "grades.csv").unlink()
    proc = make(["export-grades", f"COURSE={course}"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(course / "grades.csv", newline="") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    assert {s: float(r["score"]) for s, r in rows.items()} == expected
    assert rows["eve"]["reason"] == "no submission" and rows["cy"]["status"] == "graded"
    assert not (course / "gradebook.db").exists(), "with GRADEBOOK_URL no sqlite gradebook is created"
