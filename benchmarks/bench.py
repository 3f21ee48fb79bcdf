"""`make bench`: the course's measured performance, written to benchmarks/results.json (rendered by the book's
Performance page; the book build never runs this script).

(a) Attention implementations: the course's `MultiHeadAttention` (the instructor's reference, loaded from
    solutions/ when the multi-head assignment is present), `d2l.MultiHeadAttention`, `torch.nn.MultiheadAttention`,
    `F.scaled_dot_product_attention` (SDPA) and the course's `online_softmax_attention` (reference): forward time,
    forward + backward time and peak memory over sequence lengths, each also as a ratio to SDPA measured in the
    same run, on the CPU and on CUDA when present.
(b) The course itself: a cold and a warm `jupyter-book build` of the book in a temporary copy (and how many pages
    its table of contents lists: the book measured), and seconds per graded notebook of the course's grader
    (`make grade`: sandbox and judge; its `GRADER_GENERATION` is recorded) and of plain `nbgrader autograde`, over
    simulated submissions (reference answers) in a temporary course copy.
(c) Generation (the modern-attention chapter): decode throughput in tokens per second of
    `attention_course.modern.TinyLM` (4 layers, 256 features, 8 query heads in 2 key/value groups) with and without
    the key-value cache, after n tokens, and the cache bytes per token of MHA, GQA and MQA at the size of Llama 2 7B
    (32 layers, 32 heads of 128, bfloat16), measured on one layer of each; CPU and CUDA when present.

Options: --lengths 256 512 1024, --repeats 3, --threads 1, --skip-book, --skip-grading, --students 3, --out PATH,
--decode-lengths 128 256 512 1024, --decode-only (measure (c) alone and replace its part of an existing results
file), --assignments A B (grade only these; default every one), --note TEXT (recorded with the machine, e.g. what
else ran on it). The load average is recorded at the start and at the end of the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from attention_course import notebooks as nbt  # noqa: E402
from attention_course.jupyter_env import private_home  # noqa: E402
from attention_course.measure import peak_bytes, seconds  # noqa: E402

NUM_HEADS, HEAD_SIZE, BATCH = 4, 32, 2
NUM_HIDDENS = NUM_HEADS * HEAD_SIZE


def machine() -> dict:
    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or ""
    try:
        cpu = next(
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {n: version(n) for n in ("torch", "d2l", "nbgrader", "jupyter-book", "numpy")},
    }


def implementations(device):
    """name -> (make(n) -> callable returning an output to backpropagate from, kind)."""
    from d2l import torch as d2l

    impls = {}
    course_mha = ROOT / "solutions" / "multi-head" / "multi-head.ipynb"
    if course_mha.is_file():
        mod = nbt.load_module(course_mha, "course_multi_head")
        impls["course MultiHeadAttention"] = lambda: mod.MultiHeadAttention(NUM_HIDDENS, NUM_HEADS, 0.0)
    impls["d2l.MultiHeadAttention"] = lambda: d2l.MultiHeadAttention(NUM_HIDDENS, NUM_HEADS, 0.0)
    online = nbt.load_module(
        ROOT / "solutions" / "efficient-attention" / "efficient-attention.ipynb", "course_efficient_attention"
    ).online_softmax_attention

    def module_case(factory):
        def make(n):
            module = factory().to(device).eval()
            x = torch.randn(BATCH, n, NUM_HIDDENS, device=device, requires_grad=True)
            with torch.no_grad():
                module(x, x, x, None)  # lazy layers get their shapes
            return (lambda: module(x, x, x, None)), [x, *module.parameters()]

        return make

    cases = {name: module_case(f) for name, f in impls.items()}

    def torch_mha(n):
        module = nn.MultiheadAttention(NUM_HIDDENS, NUM_HEADS, bias=False, batch_first=True).to(device).eval()
        x = torch.randn(BATCH, n, NUM_HIDDENS, device=device, requires_grad=True)
        return (lambda: module(x, x, x, need_weights=False)[0]), [x, *module.parameters()]

    cases["torch.nn.MultiheadAttention"] = torch_mha

    def sdpa(n):
        q, k, v = (torch.randn(BATCH, NUM_HEADS, n, HEAD_SIZE, device=device, requires_grad=True) for _ in range(3))
        return (lambda: F.scaled_dot_product_attention(q, k, v)), [q, k, v]

    cases["F.scaled_dot_product_attention"] = sdpa

    def online_case(n):
        q, k, v = (torch.randn(BATCH * NUM_HEADS, n, HEAD_SIZE, device=device, requires_grad=True) for _ in range(3))
        return (lambda: online(q, k, v, block_size=64)), [q, k, v]

    cases["online_softmax_attention (b=64)"] = online_case
    return cases


def bench_attention(lengths, repeats, devices):
    rows = []
    for device in devices:
        cases = implementations(device)
        for n in tqdm(lengths, desc=f"attention on {device}"):
            for name, make in cases.items():
                torch.manual_seed(0)
                fn, leaves = make(n)

                def forward():
                    with torch.no_grad():
                        return fn()

                def train_step():
                    for t in leaves:
                        t.grad = None
                    fn().sum().backward()

                rows.append(
                    {
                        "device": device,
                        "implementation": name,
                        "n": n,
                        "forward_ms": 1e3 * seconds(forward, repeats=repeats, device=device),
                        "forward_backward_ms": 1e3 * seconds(train_step, repeats=repeats, device=device),
                        "forward_peak_mib": peak_bytes(forward, device=device) / 2**20,
                        "forward_backward_peak_mib": peak_bytes(train_step, device=device) / 2**20,
                    }
                )
    # ratios to SDPA, same device, same n, same run
    base = {(r["device"], r["n"]): r for r in rows if r["implementation"] == "F.scaled_dot_product_attention"}
    for r in rows:
        b = base[r["device"], r["n"]]
        for key in ("forward_ms", "forward_backward_ms", "forward_peak_mib", "forward_backward_peak_mib"):
            r[key + "_vs_sdpa"] = r[key] / b[key] if b[key] else None
    return rows


def bench_decode(lengths, repeats, devices) -> dict:
    """(c): seconds and tokens/s of one generation step after n tokens, with and without the KV cache; cache bytes."""
    from attention_course.modern import CachedAttention, TinyLM, cache_bytes

    steps, per_token = [], []
    for device in devices:
        torch.manual_seed(0)
        model = TinyLM(vocab=1000, d_model=256, layers=4, heads=8, groups=2).to(device).eval()
        with torch.no_grad():
            for n in tqdm(lengths, desc=f"decode on {device}"):
                tokens = torch.randint(0, 1000, (1, n + 1), device=device)  # (batch, steps)
                _, caches = model(tokens[:, :n])
                for mode, step in (
                    ("recompute", lambda: model(tokens)),
                    ("kv cache", lambda: model(tokens[:, n:], caches)),
                ):
                    t = seconds(step, repeats=repeats, device=device)
                    steps.append(
                        {"device": device, "n": n, "mode": mode, "ms_per_token": t * 1e3, "tokens_per_s": 1.0 / t}
                    )
        layers, tokens_run = 32, 16
        for name, groups in (("MHA", 32), ("GQA", 8), ("MQA", 1)):
            layer = CachedAttention(4096, 32, groups).to(device=device, dtype=torch.bfloat16).eval()
            with torch.no_grad():
                _, cache = layer(torch.randn(1, tokens_run, 4096, device=device, dtype=torch.bfloat16))
            per_token.append(
                {
                    "device": device,
                    "attention": name,
                    "kv_heads": groups,
                    "kib_per_token": layers * cache_bytes([cache]) / tokens_run / 2**10,
                }
            )
            del layer, cache
    return {
        "model": "TinyLM(vocab=1000, d_model=256, layers=4, heads=8, groups=2), batch 1",
        "cache_model": "32 layers x 32 query heads x 128, bfloat16 (Llama 2 7B)",
        "steps": steps,
        "cache_per_token": per_token,
    }


def _print_decode(decode: dict) -> None:
    print(f"\nDecode ({decode['model']}): one step after n tokens")
    for r in decode["steps"]:
        print(
            f"  {r['device']:5} n={r['n']:5d} {r['mode']:10} {r['ms_per_token']:8.2f} ms "
            f"{r['tokens_per_s']:9.1f} tokens/s"
        )
    print(f"KV cache per token ({decode['cache_model']}):")
    for r in decode["cache_per_token"]:
        print(f"  {r['device']:5} {r['attention']} ({r['kv_heads']:2d} key/value heads): {r['kib_per_token']:6.0f} KiB")


def _run(cmd, cwd, env=None):
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return took


def _env(home: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYDEVD_DISABLE_FILE_VALIDATION="1")
    for var, value in private_home(home).items():
        env.setdefault(var, value)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return env


def bench_book(tmp: Path) -> dict:
    """Cold build (no cache) and warm rebuild (nothing changed) of the whole book in a copy."""
    copy = tmp / "book-copy"  # the checkout as the build sees it (exercises/ and _static/ included), no build tree
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "_build", "__pycache__", ".ipynb_checkpoints", "submitted", "autograded", "feedback"
        ),
    )
    env = _env(tmp / "home")
    env["PYTHONPATH"] = str(copy)
    env["CAPSTONE_CACHE"] = str(copy / "_build" / "capstone")
    cmd = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build",
        ".",
        "--builder",
        "html",
        "-W",
        "-n",
        "--keep-going",
    ]
    from attention_course.sphinx_fixes import toc_order

    pages = len(toc_order(copy / "_toc.yml"))  # what the site has: the table of contents, root included
    cold = _run(cmd, copy, env)
    warm = _run(cmd, copy, env)
    return {"cold_seconds": cold, "warm_seconds": warm, "pages": pages}


def bench_grading(tmp: Path, students: int, assignments: list[str] | None = None) -> list[dict]:
    """Per assignment, `students` submissions (the reference answers) graded by the course's grader (`make grade`,
    one job: sandbox, judge, feedback; with warm kernels, and with cold ones) and by plain `nbgrader autograde`,
    each in its own course copy."""
    from tools.synthetic import build_class

    env = _env(tmp / "home")
    env.pop("GRADEBOOK_URL", None)
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    rows = []
    every = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    unknown = set(assignments or []) - set(every)
    if unknown:
        raise SystemExit(f"--assignments: no such assignment {sorted(unknown)} (there are {every})")
    for assignment in tqdm([a for a in every if not assignments or a in assignments], desc="grading"):
        course = tmp / f"course-{assignment}"
        build_class(course, assignment, students)  # students <= 1 + rewritten correct answers: full marks
        db = f"--CourseDirectory.db_url=sqlite:///{course}/plain.db"
        _run([nbgrader, "generate_assignment", assignment, "--force", db], course, env)
        plain = _run([nbgrader, "autograde", assignment, "--force", db], course, env)
        seconds = {}
        for kernels in ("cold", "warm"):  # every kernel started on its own, or forked from the worker's template
            grade_env = {**env, "GRADEBOOK_URL": f"sqlite:///{course}/{kernels}.db", "GRADING_KERNELS": kernels}
            seconds[kernels] = _run(
                [
                    "make",
                    "--no-print-directory",
                    "-C",
                    str(ROOT),
                    "grade",
                    f"ASSIGNMENT={assignment}",
                    f"COURSE={course}",
                    "JOBS=1",
                    "GRADE_FLAGS=--force --no-progress",
                ],
                ROOT,
                grade_env,
            )
        rows.append(
            {
                "assignment": assignment,
                "notebooks": students,
                "make_grade_seconds": seconds["warm"],
                "make_grade_seconds_per_notebook": seconds["warm"] / students,
                "make_grade_cold_seconds": seconds["cold"],
                "make_grade_cold_seconds_per_notebook": seconds["cold"] / students,
                "plain_seconds": plain,
                "plain_seconds_per_notebook": plain / students,
            }
        )
    return rows


def grader() -> dict:
    """What graded: the course grader's version (bumped when grading changes what it measures)."""
    from grading import floor_seconds  # benchmarks/grading.py: one kernel start + `import torch`

    from attention_course.grading.options import GRADER_GENERATION

    return {
        "version": GRADER_GENERATION,
        "command": "make grade JOBS=1 (sandbox + judge, feedback included)",
        "floor_seconds": floor_seconds(),
        "warm_floor_seconds": floor_seconds(kernels="warm"),
    }


def _restamp(out: Path, name: str, date: str) -> None:
    """The book caches executed pages by their code: a new stamp in the page makes the next build re-render it."""
    if out == ROOT / "benchmarks" / "results.json":
        page = ROOT / "book" / "performance.md"
        page.write_text(re.sub(rf'{name} = ".*?"', f'{name} = "{date}"', page.read_text(), count=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--skip-book", action="store_true")
    parser.add_argument("--skip-grading", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for (a); 1 by default: timings on a shared machine are steadier",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument(
        "--assignments", nargs="+", default=None, help="grade only these assignments (default: every one)"
    )
    parser.add_argument("--note", default="", help="recorded with the machine: e.g. what else ran on it")
    parser.add_argument("--decode-lengths", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument(
        "--decode-only",
        action="store_true",
        help="measure (c) only and replace results['decode'] in --out (the rest is kept)",
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.decode_only:
        results = json.loads(args.out.read_text())
        start = time.perf_counter()
        results["decode"] = bench_decode(args.decode_lengths, args.repeats, devices)
        results["decode"]["machine"] = {**machine(), "bench_seconds": time.perf_counter() - start}
        _print_decode(results["decode"])
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        _restamp(args.out, "DECODE_STAMP", results["decode"]["machine"]["date"])
        print(f"\nwrote {args.out} (decode part only, {results['decode']['machine']['bench_seconds']:.0f} s)")
        return 0
    results = {
        "machine": {**machine(), "note": args.note},
        "settings": {
            "lengths": args.lengths,
            "repeats": args.repeats,
            "batch": BATCH,
            "heads": NUM_HEADS,
            "head_size": HEAD_SIZE,
            "students": args.students,
        },
    }
    start = time.perf_counter()
    results["attention"] = bench_attention(args.lengths, args.repeats, devices)
    print("\nAttention (ratios to F.scaled_dot_product_attention, same device, same run):")
    print(
        f"{'device':6} {'n':>5} {'implementation':34} {'fwd ms':>9} {'x SDPA':>7} {'fwd+bwd ms':>11} {'x SDPA':>7} "
        f"{'fwd MiB':>8} {'x SDPA':>7} {'f+b MiB':>8} {'x SDPA':>7}"
    )
    for r in results["attention"]:
        print(
            f"{r['device']:6} {r['n']:5d} {r['implementation']:34} {r['forward_ms']:9.2f} "
            f"{r['forward_ms_vs_sdpa']:7.2f} "
            f"{r['forward_backward_ms']:11.2f} {r['forward_backward_ms_vs_sdpa']:7.2f} {r['forward_peak_mib']:8.2f} "
            f"{r['forward_peak_mib_vs_sdpa'] or 0:7.2f} {r['forward_backward_peak_mib']:8.2f} "
            f"{r['forward_backward_peak_mib_vs_sdpa'] or 0:7.2f}"
        )
    decode_start = time.perf_counter()
    results["decode"] = bench_decode(args.decode_lengths, args.repeats, devices)
    results["decode"]["machine"] = {**machine(), "bench_seconds": time.perf_counter() - decode_start}
    _print_decode(results["decode"])
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        if not args.skip_book:
            results["book"] = bench_book(tmp)
            print(
                f"\nBook: cold build {results['book']['cold_seconds']:.1f} s, warm rebuild "
                f"{results['book']['warm_seconds']:.1f} s ({results['book']['pages']} pages)"
            )
        if not args.skip_grading:
            results["grader"] = grader()
            results["grading"] = bench_grading(tmp, args.students, args.assignments)
            print(f"\nGrading (reference answers; grader version {results['grader']['version']}), s per notebook:")
            for r in results["grading"]:
                print(
                    f"  {r['assignment']:24} make grade {r['make_grade_seconds_per_notebook']:5.1f} (warm kernels), "
                    f"{r['make_grade_cold_seconds_per_notebook']:5.1f} (cold), "
                    f"plain nbgrader autograde {r['plain_seconds_per_notebook']:5.1f}"
                )
    results["machine"]["bench_seconds"] = time.perf_counter() - start
    results["machine"]["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    _restamp(args.out, "RESULTS_STAMP", results["machine"]["date"])
    _restamp(args.out, "DECODE_STAMP", results["decode"]["machine"]["date"])
    print(f"\nwrote {args.out} ({results['machine']['bench_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
