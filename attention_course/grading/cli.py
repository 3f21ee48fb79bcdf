"""`python -m attention_course.grading grade|collect|export` (what `make grade`, `make collect` run): the options,
the choice of a pool, and the only place that prints an error."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from attention_course.grading.course import Course
from attention_course.grading.options import Options
from attention_course.grading.records import GradingError
from attention_course.grading.sandbox import NOTEBOOK_SECONDS, Limits


def _fail(message: str) -> int:
    """An instructor's mistake: one clear line on stderr, exit status 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attention_course.grading", description=__doc__)
    parser.add_argument("--course", default=".", help="course root (holds nbgrader_config.py)")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade every submission of an assignment (sandboxed, parallel, resumable)")
    g.add_argument("assignment")
    g.add_argument("--jobs", "-j", type=int, default=0, help="parallel workers (default: all cores)")
    g.add_argument("--force", action="store_true", help="regrade even submissions already graded unchanged")
    g.add_argument(
        "--trust",
        default="",
        help="comma-separated students whose review flags (static scan) you cleared: no longer listed",
    )
    g.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: c.Execute.timeout)")
    g.add_argument(
        "--notebook-timeout",
        type=int,
        default=NOTEBOOK_SECONDS,
        help=f"seconds per notebook (default {NOTEBOOK_SECONDS})",
    )
    g.add_argument(
        "--memory",
        type=float,
        default=Limits.memory_bytes / 2**30,
        help=f"memory limit per sandbox in GiB (default {Limits.memory_bytes / 2**30:g})",
    )
    g.add_argument(
        "--disk",
        type=float,
        default=Limits.disk_bytes / 2**30,
        help=f"writable space per sandbox in GiB (default {Limits.disk_bytes / 2**30:g})",
    )
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--no-feedback", action="store_true")
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="grade on the Dask cluster of this scheduler (tcp://host:8786, tls://...; default: "
        "$DASK_SCHEDULER_ADDRESS, else this machine)",
    )
    g.add_argument(
        "--judge-address",
        default=None,
        metavar="HOST[:PORT]",
        help="where the workers reach this machine's judge service (default 127.0.0.1 for a scheduler on this machine)",
    )
    g.add_argument("--tls-ca-file", default=None, help="Dask TLS: the cluster's CA (else Dask's config)")
    g.add_argument("--tls-cert", default=None, help="Dask TLS: this client's certificate")
    g.add_argument("--tls-key", default=None, help="Dask TLS: this client's key")
    c = sub.add_parser("collect", help="place an LMS bulk download (zip) into submitted/")
    c.add_argument("assignment")
    c.add_argument("zip", type=Path)
    c.add_argument("--pattern", default=None, help="regex with named groups student_id and file (other LMSs)")
    e = sub.add_parser("export", help="write grades.csv from the gradebook")
    e.add_argument("--to", type=Path, default=None)
    e.add_argument(
        "--assignment",
        default=None,
        help="also write this assignment's LMS grade files: grades-canvas-A.csv, grades-moodle-A.csv, "
        "grades-questions-A.csv (one column per graded cell)",
    )
    e.add_argument("--lms", default="canvas,moodle,questions", help="which of those files (comma-separated)")
    m = sub.add_parser("similarity", help="report the most similar pairs of answers (never changes a score)")
    m.add_argument("assignment")
    m.add_argument("--top", type=int, default=20, help="pairs shown (default 20)")
    m.add_argument(
        "--max-share",
        type=int,
        default=None,
        help="code found in more than this many students is common and ignored (default: 2, or a tenth of the "
        "class up to 10)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(  # the grader's modules log why something failed; GRADING_DEBUG=1 shows every detail
        level=logging.DEBUG if os.environ.get("GRADING_DEBUG") else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    import warnings

    try:  # nbgrader 0.9 with SQLAlchemy 2 warns on every new submission; harmless
        from sqlalchemy.exc import SAWarning

        warnings.filterwarnings("ignore", category=SAWarning)
    except ImportError:
        pass
    if not (Path(args.course) / "nbgrader_config.py").is_file():
        return _fail(f"{args.course} is not a course folder: it has no nbgrader_config.py")
    course = Course.load(args.course)

    if args.command == "grade":
        from attention_course.grading.ids import valid_id

        if not valid_id(args.assignment):
            return _fail(f"{args.assignment!r} is not a valid assignment id")
        if not course.source_notebooks(args.assignment):
            return _fail(f"unknown assignment {args.assignment!r}: no notebooks in {course.source / args.assignment}/")

        opts = Options(
            args.assignment,
            jobs=args.jobs,
            force=args.force,
            trust={s.strip() for s in args.trust.split(",") if s.strip()},
            cell_timeout=args.cell_timeout,
            notebook_timeout=args.notebook_timeout,
            memory_bytes=int(args.memory * 2**30),
            disk_bytes=int(args.disk * 2**30),
            progress=not args.no_progress,
            feedback=not args.no_feedback,
            scheduler=args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None,
            judge_address=args.judge_address,
            tls={"ca": args.tls_ca_file, "cert": args.tls_cert, "key": args.tls_key},
        )
        if opts.scheduler:
            try:
                import distributed  # noqa: F401
            except ImportError:
                return _fail("grading on a cluster needs dask and distributed (pip install -r requirements.txt)")
            for name, path in (opts.tls or {}).items():
                if path and not Path(path).is_file():
                    return _fail(f"--tls-{'ca-file' if name == 'ca' else name}: no such file: {path}")
        return _grade(course, opts)
    if args.command == "collect":
        import re
        import zipfile

        from attention_course.grading.collect import collect, roster_names

        if not course.source_notebooks(args.assignment):
            return _fail(f"unknown assignment {args.assignment!r}: no notebooks in {course.source / args.assignment}/")
        if not args.zip.is_file():
            return _fail(f"no such file: {args.zip}")
        if not zipfile.is_zipfile(args.zip):
            return _fail(f"{args.zip} is not a zip file (expected the LMS's bulk download)")
        if args.pattern is not None:
            try:
                groups = re.compile(args.pattern).groupindex
            except re.error as exc:
                return _fail(f"bad --pattern {args.pattern!r}: {exc}")
            if not {"student_id", "file"} <= set(groups):
                return _fail("--pattern needs the named groups (?P<student_id>...) and (?P<file>...)")
        from attention_course.grading.gradebook import roster
        from attention_course.grading.term import chooser

        try:
            choose = chooser(course, args.assignment, roster(course, course.db_url))
            report = collect(course, args.assignment, args.zip, args.pattern, roster_names(course.db_url), choose)
        except (zipfile.BadZipFile, OSError) as exc:
            return _fail(f"cannot read {args.zip}: {exc}")
        except GradingError as exc:
            return _fail(str(exc))
        for entry, dest in report.placed:
            print(f"placed  {entry} -> {dest}")
        for note in report.notes:
            print(f"note    {note}")
        for entry, why in report.unplaced:
            print(f"NOT PLACED  {entry}: {why}")
        students = {d.split("/")[1] for _, d in report.placed}
        print(
            f"{len(report.placed)} file(s) placed for {len(students)} student(s); "
            f"{len(report.unplaced)} file(s) could not be placed"
        )
        return 0
    if args.command == "similarity":
        from attention_course.grading import similarity
        from attention_course.grading.ids import valid_id

        if not valid_id(args.assignment) or not course.source_notebooks(args.assignment):
            return _fail(f"unknown assignment {args.assignment!r}: no notebooks in {course.source / args.assignment}/")
        page, pairs = similarity.report(course, args.assignment, args.max_share, args.top)
        for pair in pairs[: min(args.top, 10)]:
            print(f"  {pair.score:4.0%}  {pair.a}  {pair.b}  ({pair.shared} shared fingerprints)")
        print(f"{page}: {len(pairs)} pair(s), the {min(args.top, len(pairs))} most similar with their matching lines")
        return 0
    if args.command == "export":
        from attention_course.grading import lms
        from attention_course.grading.export import grade_rows, write

        to: Path = args.to or course.root / "grades.csv"
        kinds = [k.strip() for k in args.lms.split(",") if k.strip()]
        if unknown := [k for k in kinds if k not in ("canvas", "moodle", "questions")]:
            return _fail(f"--lms: unknown kind {unknown[0]!r} (canvas, moodle, questions)")
        try:
            rows = grade_rows(course, course.db_url)
        except GradingError as exc:
            return _fail(str(exc))
        if args.assignment and not any(r["assignment"] == args.assignment for r in rows):
            return _fail(f"unknown assignment {args.assignment!r}: not in the gradebook (grade it first)")
        write(to, rows)
        print(f"{to}: {len(rows)} row(s)")
        if args.assignment:
            for kind, target in lms.files(course, args.assignment).items():
                if kind not in kinds:
                    continue
                if kind == "questions":
                    n = lms.per_question(course, course.db_url, args.assignment, rows, target)
                    print(f"{target}: {n} question column(s)")
                    continue
                left_out = getattr(lms, kind)(course, course.db_url, args.assignment, rows, target)
                print(f"{target}: for {kind.capitalize()}'s grade import")
                if left_out:
                    why = "no Canvas user id (never collected from Canvas)" if kind == "canvas" else "no email"
                    print(f"  left out ({why}): {', '.join(left_out)}")
        return 0
    return 2


def _grade(course: Course, opts: Options) -> int:
    """Choose the pool (a Dask cluster when a scheduler is named, else this machine's sandboxed workers) and
    grade; an instructor's mistake or an unusable cluster is one `error:` line, exit 2."""
    from attention_course.grading.grade import grade
    from attention_course.grading.interfaces import Pool

    def make_pool(scratch: Path) -> Pool:
        if opts.scheduler:
            from attention_course.grading.cluster import DaskPool

            return DaskPool(opts, scratch, sys.stdout)
        from attention_course.grading.worker import LocalPool

        return LocalPool(opts.jobs or os.cpu_count() or 1)

    if not opts.scheduler:  # on a cluster, the workers sandbox (checked by their preflight)
        from attention_course.grading.sandbox import available

        why = available()
        if why:
            return _fail(f"cannot sandbox submissions: {why}")
    try:
        return grade(course, opts, make_pool)
    except GradingError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
