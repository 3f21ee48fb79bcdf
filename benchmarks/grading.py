"""Benchmark: plain sequential `nbgrader autograde` against `make grade` on the same synthetic class, in the same
run, on the same machine (not a test: `make bench-grading`).

The class: N students of one assignment (default attention-pooling), answers drawn from the reference, the
rewritten correct answers and the realistic wrong answers of tests/submissions/. Prints seconds per notebook for
each grader, the speedup, and the floor: one sandboxed kernel start + `import torch` (what every graded notebook
pays at least, per worker).

    .venv/bin/python benchmarks/grading.py [--students 12] [--jobs N] [--assignment attention-pooling]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from attention_course import notebooks as nbt  # noqa: E402


def build_class(course: Path, assignment: str, students: int) -> None:
    from conftest import copy_course
    from submissions import for_assignment

    copy_course(course)
    release = nbt.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    ref = nbt.reference_answers(nbt.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb"))
    module = for_assignment(assignment)
    variants = [ref, {**ref, **module.CORRECT}] + [{**ref, cell: src} for cell, src, _ in module.WRONG.values()]
    for i in range(students):
        nb = nbt.with_answers(release, variants[i % len(variants)])
        nbt.write(nb, course / "submitted" / f"student{i:03d}" / assignment / f"{assignment}.ipynb")


CPU = {}


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    """Wall seconds of the command; its CPU seconds (all waited-for descendants) go to CPU[label]."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["last"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return seconds


def floor_seconds(repeats: int = 3) -> float:
    """Wall time of one sandboxed kernel that starts and runs `import torch` (median of a few)."""
    import nbformat

    from attention_course.grading import runner
    from attention_course.grading.sandbox import lease_uid

    uid, _lock = lease_uid()
    times = []
    for _ in range(repeats):
        d = Path(tempfile.mkdtemp(prefix="floor-"))
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
        nbformat.write(nb, str(d / "in.ipynb"))
        job = {"notebook": str(d / "in.ipynb"), "package_dir": str(ROOT / "attention_course"),
               "work_dir": str(d / "work"), "ipc_dir": str(d / "ipc"), "uid": uid, "cell_timeout": 120,
               "notebook_timeout": 300}
        start = time.monotonic()
        result = asyncio.run(runner.execute(job))
        times.append(time.monotonic() - start)
        shutil.rmtree(d, ignore_errors=True)
        assert result["cells"][0]["status"] == "ran" and not result["died"], result
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="attention-pooling")
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    import conftest  # noqa: F401 (sets JUPYTER_*/IPYTHONDIR/MPLCONFIGDIR to the build tree, as the tests do)

    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    env.pop("GRADEBOOK_URL", None)
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        course = Path(tmp) / "course"
        build_class(course, args.assignment, args.students)
        plain_db = f"sqlite:///{tmp}/plain.db"
        subprocess.run(["nbgrader", "generate_assignment", args.assignment, "--force",
                        f"--CourseDirectory.db_url={plain_db}"], cwd=course, env=env, capture_output=True, check=True)
        print(f"{args.students} notebooks of {args.assignment}; {os.cpu_count()} cores; load "
              f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}", flush=True)
        plain = timed(["nbgrader", "autograde", args.assignment, "--force", f"--CourseDirectory.db_url={plain_db}"],
                      course, env)
        print(f"plain nbgrader autograde (sequential): {plain:7.1f} s  = {plain / args.students:5.2f} s/notebook"
              "", flush=True)
        fast_env = {**env, "GRADEBOOK_URL": f"sqlite:///{tmp}/fast.db"}
        fast = timed(["make", "--no-print-directory", "-C", str(ROOT), "grade", f"ASSIGNMENT={args.assignment}",
                      f"COURSE={course}", f"JOBS={args.jobs}", "GRADE_FLAGS=--force --no-progress"], ROOT, fast_env)
        print(f"make grade JOBS={args.jobs} (sandboxed, feedback included): {fast:7.1f} s  = "
              f"{fast / args.students:5.2f} s/notebook", flush=True)
        floor = floor_seconds()
        per_worker = fast * args.jobs / args.students
        print(f"speedup: {plain / fast:.2f}x (load now {os.getloadavg()[0]:.1f}: other users' processes share the cores)")
        print(f"floor (one sandboxed kernel start + import torch): {floor:.2f} s; make grade spends "
              f"{per_worker:.2f} s of a worker per notebook ({per_worker / floor:.2f}x the floor)")
        if args.json:
            args.json.write_text(json.dumps({
                "students": args.students, "jobs": args.jobs, "cores": os.cpu_count(), "plain_s": plain,
                "make_grade_s": fast, "speedup": plain / fast, "floor_s": floor, "load_at_end": os.getloadavg()[0],
                "plain_s_per_notebook": plain / args.students, "make_grade_s_per_notebook": fast / args.students,
                "machine": platform.platform(), "python": platform.python_version()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
