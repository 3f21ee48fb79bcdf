"""Benchmark: plain sequential `nbgrader autograde` against `make grade` on the same synthetic class, in the same
run, on the same machine (not a test: `make bench-grading`).

Warm kernels (issue 21) are timed against cold ones (`GRADING_KERNELS=cold`, every kernel started on its own) on
the same class in the same run, with both floors (a cold kernel start + `import torch`, and a kernel forked from a
warm template). The class: N students of each assignment (default attention-pooling and efficient-attention),
answers drawn from the reference, the rewritten correct answers and the realistic wrong answers of
tests/submissions/. Prints seconds per notebook for each grader, the speedups, and a worker's time per notebook
against the cold floor. Also `make grade` through a Dask LocalCluster on 127.0.0.1 with as many workers: its
per-notebook overhead against the local pool, the counted traffic (tasks, judge connections, relayed chunks), the
measured unit costs (a scheduler round trip, a relayed request/reply) and a projection for N workers.

    .venv/bin/python benchmarks/grading.py [--students 12] [--jobs N] [--assignment attention-pooling ...]

`--baseline REF` (a commit of this repository) also times `make grade` of that commit's grader (extracted with
`git archive` into a temporary folder, run with the same virtual environment) on the same class, alternating with
this checkout's `--repeat` times, and prints the ratio and where a notebook's time went for each: its execution
(sandbox set-up, kernel start, cells, teardown: the runner's own clock) and the rest of a worker's time (scoring,
saving, feedback page), per notebook. `--skip-plain` and `--skip-dask` leave those runs out.
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

from tools.synthetic import build_class  # noqa: E402

VENV = Path(sys.prefix)  # the benchmark runs with the course's virtual environment: `make` uses the same one


def make_grade(root: Path, course: Path, args, env: dict, db: str, kernels: str = "warm") -> float:
    """Wall seconds of `make grade` (JOBS=args.jobs, --force) of the grader in `root` on `course`; `kernels`:
    "warm" (forked from each worker's template, the default) or "cold" (GRADING_KERNELS=cold)."""
    cmd = [
        "make",
        "--no-print-directory",
        "-C",
        str(root),
        "grade",
        f"VENV={VENV}",
        f"ASSIGNMENT={args.assignment}",
        f"COURSE={course}",
        f"JOBS={args.jobs}",
        "GRADE_FLAGS=--force --no-progress",
    ]
    return timed(
        cmd, root, {**env, "GRADEBOOK_URL": f"sqlite:///{db}", "PYTHONPATH": str(root), "GRADING_KERNELS": kernels}
    )


def executed_seconds(course: Path, assignment: str) -> float:
    """Mean seconds the runner took per notebook (sandbox set-up to teardown), from the state files."""
    times = [
        json.loads(p.read_text()).get("seconds") or 0.0
        for p in (course / "autograded").glob(f"*/{assignment}/*.grading.json")
    ]
    return sum(times) / max(len(times), 1)


def baseline_tree(ref: str, dest: Path) -> Path:
    """The files of commit `ref` of this repository in `dest` (git archive: no worktree, nothing registered)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def compare(course: Path, args, env: dict, tmp: str) -> dict:
    """`make grade` of `--baseline` and of this checkout on the same class, alternating; per-notebook figures."""
    old_root = baseline_tree(args.baseline, Path(tmp) / "baseline")
    runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "this": []}
    for i in range(args.repeat):
        for name, root in (("baseline", old_root), ("this", ROOT)):
            seconds = make_grade(root, course, args, env, f"{tmp}/{name}{i}.db")
            runs[name].append((seconds, executed_seconds(course, args.assignment)))
            print(f"  make grade ({name}, run {i + 1}): {seconds:6.1f} s", flush=True)
    figures = {}
    for name, got in runs.items():
        wall = sum(w for w, _ in got) / len(got)
        executed = sum(e for _, e in got) / len(got)
        worker = wall * args.jobs / args.students
        figures[name] = {"wall_s": wall, "worker_s_per_notebook": worker, "executed_s_per_notebook": executed}
        print(
            f"{name:>8} ({args.baseline if name == 'baseline' else 'this checkout'}): {wall:6.1f} s = "
            f"{wall / args.students:5.2f} s/notebook; a worker spends {worker:5.2f} s per notebook: executing "
            f"{executed:5.2f} (sandbox, kernel start, cells, teardown), the rest {worker - executed:5.2f} "
            f"(scoring, saving, feedback, and the run's start-up and end shared out)",
            flush=True,
        )
    ratio = figures["baseline"]["wall_s"] / figures["this"]["wall_s"]
    print(f"this checkout against {args.baseline}: {ratio:.2f}x faster (same class, same run, alternating)")
    figures["speedup"] = ratio
    return figures


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    """Wall seconds of the command (which must succeed)."""
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return seconds


def floor_seconds(repeats: int = 3, kernels: str = "cold") -> float:
    """Wall time of one sandboxed kernel that starts and runs `import torch` (median of a few): cold (the floor
    every notebook paid before warm kernels), or warm (forked from a template started before the first)."""
    import nbformat

    from attention_course.grading import runner, warm
    from attention_course.grading.sandbox import lease_uid

    os.environ["GRADING_KERNELS"] = kernels
    if kernels == "warm":
        repeats += 1  # the first starts the template: not counted
    uid, _lock = lease_uid()
    times = []
    for _ in range(repeats):
        d = Path(tempfile.mkdtemp(prefix="floor-"))
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
        nbformat.write(nb, str(d / "in.ipynb"))
        job = {
            "notebook": str(d / "in.ipynb"),
            "package_dir": str(ROOT / "attention_course"),
            "work_dir": str(d / "work"),
            "ipc_dir": str(d / "ipc"),
            "uid": uid,
            "cell_timeout": 120,
            "notebook_timeout": 300,
        }
        start = time.monotonic()
        result = asyncio.run(runner.execute(job))
        times.append(time.monotonic() - start)
        shutil.rmtree(d, ignore_errors=True)
        assert result["cells"][0]["status"] == "ran" and not result["died"], result
        assert result["kernel"] == "warm" if kernels == "warm" else result["kernel"].startswith("cold"), result
    os.environ.pop("GRADING_KERNELS")
    if warm._TEMPLATE is not None:
        warm._TEMPLATE.stop()
    if kernels == "warm":
        times = times[1:]
    return sorted(times)[len(times) // 2]


def _noop(x):
    return x


def relay_cost(messages: int = 2000) -> float:
    """Seconds one request/reply pair costs through the judge relay (two extra socket hops and the relay's
    copies), measured against the same ping-pong on a direct socket pair."""
    import socket
    import threading

    from attention_course.grading.relay import relay

    def pingpong(a, b) -> float:
        def echo():
            for _ in range(messages):
                b.sendall(b.recv(256))

        t = threading.Thread(target=echo)
        t.start()
        start = time.perf_counter()
        for _ in range(messages):
            a.sendall(b"x" * 200)
            got = 0
            while got < 200:
                got += len(a.recv(256))
        t.join()
        return (time.perf_counter() - start) / messages

    a, b = socket.socketpair()
    direct = pingpong(a, b)
    a.close(), b.close()
    a, inner1 = socket.socketpair()
    inner2, b = socket.socketpair()
    stop = threading.Event()
    t = threading.Thread(target=relay, args=(inner1, inner2, stop.is_set), daemon=True)
    t.start()
    relayed = pingpong(a, b)
    stop.set()
    for s in (a, b, inner1, inner2):
        s.close()
    return max(0.0, relayed - direct)


def dask_run(course: Path, args, env: dict, tmp: str) -> tuple[float, str, dict]:
    """`make grade` through a LocalCluster (scheduler and workers on 127.0.0.1), and the measured unit costs."""
    from distributed import Client, LocalCluster

    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the cluster's worker processes import attention_course
    with (
        LocalCluster(
            n_workers=args.jobs,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            preload=["attention_course.grading.dask_worker"],
        ) as cluster,
        Client(cluster) as client,
    ):
        client.submit(_noop, 0, pure=False).result()
        start = time.perf_counter()
        for i in range(50):
            client.submit(_noop, i, pure=False).result()
        round_trip = (time.perf_counter() - start) / 50
        denv = {**env, "GRADEBOOK_URL": f"sqlite:///{tmp}/dask.db"}
        cmd = [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "grade",
            f"ASSIGNMENT={args.assignment}",
            f"COURSE={course}",
            f"DASK_SCHEDULER={cluster.scheduler_address}",
            "GRADE_FLAGS=--force --no-progress",
        ]
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=denv, capture_output=True, text=True)
        seconds = time.monotonic() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    line = next((l for l in proc.stdout.splitlines() if l.startswith("dask: ")), "")
    return seconds, line, {"scheduler_round_trip_s": round_trip, "relay_message_s": relay_cost()}


def project(line: str, costs: dict, args, out) -> dict:
    """Notebooks per minute for N workers, from counted traffic and measured unit costs. The instructor's
    process is the one shared part: per notebook it pays a scheduler round trip, the relay of every judge
    message, and the merge/score/save/feedback it does itself (measured in the run)."""
    import re

    m = re.match(
        r"dask: (\d+) task\(s\), (\d+) judge connection\(s\), (\d+) relayed chunk\(s\).*worker "
        r"([\d.]+) s/notebook, instructor ([\d.]+) s/notebook serial.* \+ ([\d.]+) s/notebook in (\d+) "
        r"saver",
        line,
    )
    if not m:
        print(f"(no dask statistics line in the output: {line!r})", file=out)
        return {}
    tasks, conns, chunks, worker_s = int(m[1]), int(m[2]), int(m[3]), float(m[4])
    instructor_s, save_s, savers = float(m[5]), float(m[6]), int(m[7])
    per_nb_chunks = chunks / tasks
    # a request/reply pair is (at least) two chunks; the relay's cost is charged per pair
    relay_s = per_nb_chunks / 2 * costs["relay_message_s"]
    serial = costs["scheduler_round_trip_s"] + relay_s + instructor_s
    print(
        f"dask overhead per notebook: scheduler round trip {costs['scheduler_round_trip_s'] * 1e3:.1f} ms "
        f"(1 task), judge relay {conns / tasks:.0f} connection(s) and {per_nb_chunks:.0f} chunk(s) x "
        f"{costs['relay_message_s'] * 1e6:.0f} us per request/reply = {relay_s * 1e3:.1f} ms, receive+merge "
        f"{instructor_s * 1e3:.0f} ms (serial), score+save+feedback {save_s:.2f} s in {savers} saver process(es); "
        f"a worker spends {worker_s:.2f} s per notebook",
        file=out,
    )
    rows = {}
    limit = min(1 / serial, savers / save_s if save_s else float("inf"))
    for n in (2, 8, 32, 128):
        rows[n] = min(n / worker_s, limit) * 60
    print(
        "projection (notebooks/minute; judge CPU on this machine not counted): "
        + ", ".join(f"{n} workers {r:.0f}" for n, r in rows.items())
        + f"; this machine's side saturates at {limit * 60:.0f}/minute "
        f"({'the serial receive' if 1 / serial < limit * 1.0001 else f'{savers} saver process(es)'})",
        file=out,
    )
    return {
        "per_notebook_chunks": per_nb_chunks,
        "relay_s": relay_s,
        "instructor_serial_s": instructor_s,
        "save_s": save_s,
        "savers": savers,
        "worker_s": worker_s,
        "serial_s": serial,
        "notebooks_per_minute": rows,
    }


def one_assignment(args, env: dict, floor: float) -> dict:
    """Plain `nbgrader autograde`, cold `make grade` and warm `make grade` (then Dask, `--baseline`) on one class."""
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        course = Path(tmp) / "course"
        build_class(course, args.assignment, args.students)
        plain_db = f"sqlite:///{tmp}/plain.db"
        subprocess.run(
            ["nbgrader", "generate_assignment", args.assignment, "--force", f"--CourseDirectory.db_url={plain_db}"],
            cwd=course,
            env=env,
            capture_output=True,
            check=True,
        )
        print(
            f"\n{args.students} notebooks of {args.assignment}; {os.cpu_count()} cores; JOBS={args.jobs}; load "
            f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}",
            flush=True,
        )
        figures: dict = {
            "students": args.students,
            "jobs": args.jobs,
            "cores": os.cpu_count(),
            "machine": platform.platform(),
            "python": platform.python_version(),
        }
        plain = None
        if not args.skip_plain:
            plain = timed(
                ["nbgrader", "autograde", args.assignment, "--force", f"--CourseDirectory.db_url={plain_db}"],
                course,
                env,
            )
            print(
                f"plain nbgrader autograde (sequential): {plain:7.1f} s  = {plain / args.students:5.2f} s/notebook",
                flush=True,
            )
            figures.update(plain_s=plain, plain_s_per_notebook=plain / args.students)
        if args.baseline:
            figures["baseline"] = compare(course, args, env, tmp)
        for kernels in ("cold", "warm"):
            wall = make_grade(ROOT, course, args, env, f"{tmp}/{kernels}.db", kernels)
            worker = wall * args.jobs / args.students
            print(
                f"make grade JOBS={args.jobs}, {kernels} kernels (sandboxed, feedback included): {wall:7.1f} s  = "
                f"{wall / args.students:5.2f} s/notebook; {worker:5.2f} s of a worker per notebook "
                f"({worker / floor:.2f}x the cold floor)"
                + (f"; {plain / wall:.2f}x faster than plain nbgrader" if plain else ""),
                flush=True,
            )
            figures[kernels] = {
                "s": wall,
                "s_per_notebook": wall / args.students,
                "worker_s_per_notebook": worker,
                "executed_s_per_notebook": executed_seconds(course, args.assignment),
            }
        print(f"warm against cold: {figures['cold']['s'] / figures['warm']['s']:.2f}x faster (same class, same run)")
        if not args.skip_dask:
            dask_s, dask_line, costs = dask_run(course, args, env, tmp)
            print(
                f"make grade DASK_SCHEDULER=<LocalCluster on 127.0.0.1, {args.jobs} workers>: {dask_s:7.1f} s  = "
                f"{dask_s / args.students:5.2f} s/notebook ({(dask_s - figures['warm']['s']) / args.students:+.2f} "
                f"s/notebook against the local pool)",
                flush=True,
            )
            projection = project(dask_line, costs, args, out=sys.stdout)
            figures.update(
                dask_s=dask_s,
                dask_s_per_notebook=dask_s / args.students,
                dask_costs=costs,
                dask_projection=projection,
            )
        figures["load_at_end"] = os.getloadavg()[0]
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", nargs="+", default=["attention-pooling", "efficient-attention"])
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--baseline", default=None, help="a commit whose `make grade` to time against this one")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each grader with --baseline (alternating)")
    parser.add_argument("--skip-plain", action="store_true", help="no plain nbgrader autograde run")
    parser.add_argument("--skip-dask", action="store_true", help="no Dask LocalCluster run")
    args = parser.parse_args()
    home = ROOT / "_build" / "home"  # Jupyter, IPython and matplotlib write here, as in the tests
    for var, sub in [
        ("JUPYTER_CONFIG_DIR", "jupyter-config"),
        ("JUPYTER_DATA_DIR", "jupyter-data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "matplotlib"),
    ]:
        os.environ.setdefault(var, str(home / sub))
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
    }
    env.pop("GRADEBOOK_URL", None)
    floor = floor_seconds()
    warm_floor = floor_seconds(kernels="warm")
    print(
        f"floor: one sandboxed kernel start + import torch, cold {floor:.2f} s; forked from a warm template "
        f"{warm_floor:.2f} s ({floor / warm_floor:.1f}x less)",
        flush=True,
    )
    every: dict = {"floor_s": floor, "warm_floor_s": warm_floor, "assignments": {}}
    for assignment in args.assignment:
        args_one = argparse.Namespace(**{**vars(args), "assignment": assignment})
        every["assignments"][assignment] = one_assignment(args_one, env, floor)
    every["load_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
