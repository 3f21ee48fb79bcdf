"""`make similarity ASSIGNMENT=a`: which students' answers are most alike, for the instructor to read. It never
reads or writes a score.

MOSS's method (Schleimer, Wilkerson, Aiken, *Winnowing: local algorithms for document fingerprinting*, SIGMOD
2003) over Python tokens:

1. **What is compared**: each student's own code only: the answer cells (matched to the source by nbgrader
   `grade_id`, as grading does: assemble.py) and the student's extra code cells. Every line that is in the
   released notebook (the answer template: signatures, docstrings, stubs; provided and set-up code; visible
   tests) is removed.
2. **Normalised tokens** (`tokenize`): comments, blank lines and layout dropped; every identifier that is not a
   keyword, a built-in or an attribute name becomes `V` (renaming variables changes nothing), numbers `N`,
   strings `S`; operators and attribute names (`.masked_fill`, `.sum`) stay.
3. **Winnowing**: hashes of every k-gram of tokens (k = 5); in each window of w = 4 consecutive hashes the
   smallest is a fingerprint, so any shared run of at least w + k - 1 = 8 tokens is found, wherever it is:
   reordered statements still share their fingerprints.
4. **Common code is not evidence**: as MOSS's `-m`, a fingerprint found in more than `max_share` students
   (default: 2, or a tenth of the class up to 10) is the obvious way to write it and is ignored. The score of a
   pair is the share of the smaller submission's fingerprints that the two alone (or almost alone) have.

The report (`similarity/<assignment>.html`) lists the most similar pairs with their matching lines side by side.
Student code is escaped, and the page runs no script.
"""

from __future__ import annotations

import builtins
import hashlib
import html
import io
import keyword
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from attention_course import notebooks as nbt
from attention_course.grading.assemble import Unreadable, assemble, read_submission
from attention_course.grading.course import Course, atomic_write
from attention_course.grading.ids import valid_id
from attention_course.grading.intake import find_notebook, safe_read

K = 5
W = 4
BUILTINS = set(dir(builtins))


@dataclass
class Submission:
    student: str
    lines: list[str] = field(default_factory=list)  # the student's own code lines (1-based via index + 1)
    prints: dict[int, list[int]] = field(default_factory=dict)  # fingerprint -> lines (first line of its k-gram)


@dataclass
class Pair:
    a: str
    b: str
    score: float  # share of the smaller submission's fingerprints found in both (common ones excluded)
    shared: int  # fingerprints the two share, common ones excluded
    lines: list[tuple[int, int]]  # (line in a, line in b) of each shared fingerprint


def _squash(line: str) -> str:
    return " ".join(line.split())


def template_lines(course: Course, assignment: str) -> set[str]:
    """Every line of the released notebooks (what students were given), whitespace-normalised."""
    lines: set[str] = set()
    release = course.release / assignment
    for source in course.source_notebooks(assignment):
        released = release / source.name
        nb = nbt.read(released if released.exists() else source)
        for cell in nb.cells:
            if cell.cell_type == "code":
                text = cell.source
                if not released.exists():  # the source as nbgrader releases it: no answers, no hidden tests
                    text = nbt.SOLUTION_BLOCK.sub("", nbt.without_hidden(text))
                lines.update(_squash(line) for line in text.splitlines())
    lines.discard("")
    return lines


def tokens(code: str) -> list[tuple[str, int]]:
    """(normalised token, line) of `code`; tokenize's own, with a plain lexer for code it cannot finish."""
    out: list[tuple[str, int]] = []
    previous = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            ):
                continue
            text = tok.string
            if tok.type == tokenize.NAME:
                keep = keyword.iskeyword(text) or text in BUILTINS or previous == "."
                text = text if keep else "V"
            elif tok.type == tokenize.NUMBER:
                text = "N"
            elif tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_START", -1):
                text = "S"
            out.append((text, tok.start[0]))
            previous = tok.string
        return out
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = []
        for number, line in enumerate(code.splitlines(), 1):
            for text in re.findall(r"[A-Za-z_]\w*|\d[\w.]*|\S", line.split("#")[0]):
                if re.match(r"[A-Za-z_]", text):
                    keep = keyword.iskeyword(text) or text in BUILTINS or previous == "."
                    text = text if keep else "V"
                elif text[0].isdigit():
                    text = "N"
                out.append((text, number))
                previous = text
        return out


def fingerprints(toks: list[tuple[str, int]], k: int = K, w: int = W) -> dict[int, list[int]]:
    """Winnowing: hash -> the lines where a selected k-gram with that hash starts."""
    grams = [
        (int.from_bytes(hashlib.blake2b(" ".join(t for t, _ in toks[i : i + k]).encode(), digest_size=8).digest()), i)
        for i in range(len(toks) - k + 1)
    ]
    selected: dict[int, list[int]] = {}
    last = -1
    windows = range(max(1, len(grams) - w + 1)) if grams else range(0)
    for start in windows:
        window = grams[start : start + w]
        h, i = min(window, key=lambda g: (g[0], -g[1]))  # the rightmost smallest
        if i != last:
            selected.setdefault(h, []).append(toks[i][1])
            last = i
    return selected


def student_code(course: Course, assignment: str, student: str, template: set[str]) -> list[str]:
    """The student's own code lines: answer cells and own code cells, lines of the released notebook removed."""
    folder = course.submitted / student / assignment
    sources = course.source_notebooks(assignment)
    expected = {p.stem for p in sources}
    lines: list[str] = []
    for source in sources:
        path, _ = find_notebook(folder, source.stem, expected)
        if path is None:
            continue
        try:
            nb = read_submission(safe_read(path, course.submitted))
            built = assemble(nbt.read(source), nb)
        except (Unreadable, OSError, ValueError):
            continue
        for cell in built.nb.cells:
            origin = cell.metadata.get("grading", {}).get("origin")
            if cell.cell_type == "code" and origin in ("answer", "student"):
                lines += [line for line in cell.source.splitlines() if _squash(line) not in template]
                lines.append("")
    return lines


def compare(subs: list[Submission], max_share: int | None = None) -> list[Pair]:
    """Every pair of students, most similar first."""
    n = len(subs)
    limit = max_share if max_share is not None else max(2, min(10, n // 10))
    df: dict[int, int] = {}
    for sub in subs:
        for h in sub.prints:
            df[h] = df.get(h, 0) + 1
    pairs = []
    for i, a in enumerate(subs):
        for b in subs[i + 1 :]:
            shared = [h for h in a.prints.keys() & b.prints.keys() if df[h] <= limit]
            smaller = min(len(a.prints), len(b.prints))
            if not smaller:
                continue
            lines = sorted({(a.prints[h][0], b.prints[h][0]) for h in shared})
            pairs.append(Pair(a.student, b.student, len(shared) / smaller, len(shared), lines))
    return sorted(pairs, key=lambda p: (-p.score, -p.shared, p.a, p.b))


def report(course: Course, assignment: str, max_share: int | None = None, top: int = 20) -> tuple[Path, list[Pair]]:
    """Compare the class's submissions of `assignment`; write `similarity/<assignment>.html`."""
    template = template_lines(course, assignment)
    subs = []
    folders = sorted(course.submitted.iterdir()) if course.submitted.is_dir() else []
    for folder in folders:
        if folder.is_symlink() or not folder.is_dir() or not valid_id(folder.name):
            continue
        if not (folder / assignment).is_dir() or (folder / assignment).is_symlink():
            continue
        lines = student_code(course, assignment, folder.name, template)
        sub = Submission(folder.name, lines, fingerprints(tokens("\n".join(lines))))
        subs.append(sub)
    pairs = compare(subs, max_share)
    dest = course.root / "similarity" / f"{assignment}.html"
    atomic_write(dest, _html(assignment, {s.student: s for s in subs}, pairs[:top], len(subs)))
    return dest, pairs


def _html(assignment: str, subs: dict[str, Submission], pairs: list[Pair], n: int) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>Similarity: {e(assignment)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}"
        "pre{margin:0;white-space:pre-wrap}</style></head><body>",
        f"<h1>Similarity of {e(assignment)}: {n} submission(s)</h1>",
        "<p>Answer cells and the students' own code only; the released notebook's lines removed; code shared by "
        "many students ignored. A high score is a reason to read both submissions, not a finding. Scores in the "
        "gradebook are not changed.</p>",
        "<table><tr><th>#</th><th>student</th><th>student</th><th>score</th><th>shared fingerprints</th></tr>",
    ]
    for i, p in enumerate(pairs, 1):
        out.append(
            f"<tr><td><a href='#pair{i}'>{i}</a></td><td>{e(p.a)}</td><td>{e(p.b)}</td>"
            f"<td>{p.score:.0%}</td><td>{p.shared}</td></tr>"
        )
    out.append("</table>")
    for i, p in enumerate(pairs, 1):
        if not p.lines:
            continue
        a, b = subs[p.a], subs[p.b]
        out.append(f"<h2 id='pair{i}'>{i}. {e(p.a)} and {e(p.b)}: {p.score:.0%}</h2>")
        out.append(f"<table><tr><th>line</th><th>{e(p.a)}</th><th>line</th><th>{e(p.b)}</th></tr>")
        for la, lb in p.lines:
            ta = a.lines[la - 1] if 0 < la <= len(a.lines) else ""
            tb = b.lines[lb - 1] if 0 < lb <= len(b.lines) else ""
            out.append(f"<tr><td>{la}</td><td><pre>{e(ta)}</pre></td><td>{lb}</td><td><pre>{e(tb)}</pre></td></tr>")
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)
