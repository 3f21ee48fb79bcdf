"""Every number and comparison a page states, and the evidence for each (the page audit of docs/page-audit.md).

A page is a MyST notebook (`book/**.md` listed in `_toc.yml`). Its *claims* are the numbers, and the comparative
phrases ("larger", "far above", "about", "≈", "%", "×"), in its prose (Markdown outside code cells, inline math
included, display math and literal code blocks excluded), in its figure captions and in its figure alt texts
(`mystnb: figure: caption` and `mystnb: image: alt` of a code cell). For every number the audit looks for evidence,
strongest first:

- ``output``: the page's executed notebook (the build's `_build/jupyter_execute/<page>.ipynb`) prints it, exactly
  or rounded to the digits the prose gives (88.7 for 88.72284; 7.9e-232 for 7.905e-232; 67% for 0.6652);
- ``assert``: a code cell of the page checks it (`assert`, `assert_close`, `isclose`: a `remove-cell` check
  compares the prose's number with the computed one);
- ``code``: the page's code sets it (a size, a seed, a parameter: the prose describes what the code does);
- ``include``: a file the page shows with `{literalinclude}` contains it;
- ``rule``: it is not a quantity (a year of a citation, a date, a version, a reference to a chapter, part,
  exercise, section or equation, an item number);
- ``whitelist``: `tools/claims_whitelist.yml` lists it for the page, with the reason it needs no output (a
  definition, an exact mathematical value, a fact about a standard such as float32's largest number).

A number with none of these is *unexplained*: `tests/test_page_claims.py` fails on it. Comparisons carry no number
to match: they are listed for a reader, who checks each against the page's output and records the verdict in
docs/page-audit.md.

    python -m tools.claims              # unexplained numbers of every page (exit 1 when any)
    python -m tools.claims --all        # every claim with its evidence, as a Markdown table
    python -m tools.claims --comparisons
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WHITELIST = ROOT / "tools" / "claims_whitelist.yml"
EXECUTED = ROOT / "_build" / "jupyter_execute"

# ---------------------------------------------------------------------------------------------------- the pages


def toc_pages(root: Path = ROOT) -> list[str]:
    """Every document `_toc.yml` lists, root first, as `book/...` without suffix."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [str(Path(f).with_suffix("")) if f.endswith((".md", ".ipynb")) else f for f in found]


@dataclass
class Text:
    """A run of text that a reader reads: prose (one line), a caption or an alt text."""

    kind: str  # prose | caption | alt
    line: int  # 1-based line of the page source where the text starts
    text: str
    section: str = ""  # the heading above it


@dataclass
class Page:
    name: str
    texts: list[Text] = field(default_factory=list)
    code: list[str] = field(default_factory=list)  # the source of every code cell, in order
    includes: list[str] = field(default_factory=list)  # the text of every {literalinclude} file


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,}|:{3,})\s*(\{[\w:-]+\})?\s*(.*)$")
PROSE_DIRECTIVES = {"{note}", "{tip}", "{warning}", "{important}", "{admonition}", "{hint}", "{caution}", "{seealso}"}


def parse_page(path: Path, root: Path = ROOT) -> Page:
    """The texts, code and included files of one MyST page."""
    lines = path.read_text().splitlines()
    page = Page(str(path.relative_to(root).with_suffix("")))
    i = 0
    if lines and lines[0].strip() == "---":  # front matter
        i = 1
        while i < len(lines) and lines[i].strip() != "---":
            i += 1
        i += 1
    in_display_math = False
    prose_fences: list[str] = []
    paragraph: list[str] = []
    paragraph_line = 0
    section = ""

    def flush():
        nonlocal paragraph
        if paragraph:
            page.texts.append(Text("prose", paragraph_line, "\n".join(paragraph), section))
        paragraph = []

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        m = FENCE.match(line)
        if in_display_math:
            if "$$" in stripped:
                in_display_math = False
            i += 1
            continue
        if m:
            flush()
            fence, directive, arg = m.group(2), m.group(3), m.group(4)
            if prose_fences and not directive and not arg and stripped == prose_fences[-1]:
                prose_fences.pop()  # the end of a note or tip
                i += 1
                continue
            if directive in PROSE_DIRECTIVES:  # its body is prose: read on
                prose_fences.append(fence)
                i += 1
                continue
            start = i
            i += 1
            body = []
            # a fence closes on a line of its character only, at least as long as the opening one
            while i < len(lines) and not re.fullmatch(re.escape(fence[0]) + f"{{{len(fence)},}}", lines[i].strip()):
                body.append(lines[i])
                i += 1
            i += 1
            if directive == "{code-cell}":
                _code_cell(page, body, start + 1, section)
            elif directive == "{literalinclude}":
                target = (path.parent / arg.strip()).resolve()
                if target.is_file():
                    page.includes.append(target.read_text())
            continue
        if stripped.startswith("$$"):
            # display math: a formula, read as a definition (numbers in it are exponents, indices, constants)
            flush()
            if not (len(stripped) > 2 and stripped.endswith("$$")):
                in_display_math = True
            i += 1
            continue
        if (
            stripped in {"", "+++"}
            or stripped.startswith((":label:", ":name:", ":class:", "<!--"))
            or re.fullmatch(r"\(\S+\)=", stripped)
        ):
            flush()
            i += 1
            continue
        if stripped.startswith("#"):
            flush()
            section = stripped.lstrip("#").strip()
        elif re.match(r"(\d+[.)]|[-*+])\s", stripped):
            flush()  # a list item starts a text of its own
        if not paragraph:
            paragraph_line = i + 1
        paragraph.append(line)
        if stripped.startswith("#"):
            flush()
        i += 1
    flush()
    return page


def _code_cell(page: Page, body: list[str], first_line: int, section: str) -> None:
    code = body
    if body and body[0].strip() == "---":  # the cell's YAML options
        end = next((k for k in range(1, len(body)) if body[k].strip() == "---"), 0)
        options = yaml.safe_load("\n".join(body[1:end])) or {}
        mystnb = options.get("mystnb") or {}
        alt = (mystnb.get("image") or {}).get("alt")
        caption = (mystnb.get("figure") or {}).get("caption")
        if caption:
            page.texts.append(Text("caption", first_line, caption, section))
        if alt:
            page.texts.append(Text("alt", first_line, alt, section))
        code = body[end + 1 :]
    elif body:
        code = [c for c in body if not re.match(r"^:\w[\w-]*:", c)]
    page.code.append("\n".join(code))


# ------------------------------------------------------------------------------------------------------- numbers


@dataclass
class Number:
    text: str  # as written
    value: float
    digits: int  # decimals written (for rounding); for 7.9e-232 and 10^6 the mantissa's significant digits
    percent: bool = False
    scientific: bool = False
    start: int = 0  # offset in the cleaned text
    in_math: bool = False  # inside $...$
    in_code: bool = False  # inside `...`


SCI = re.compile(
    r"(?<![\w.])(?P<sign>[-−])?(?P<mant>\d+(?:\.\d+)?)\s*(?:\\times|×|\\cdot|·)\s*10\^\{?(?P<exp>[-−]?\d+)\}?"
    r"|(?<![\w.])(?P<sign2>[-−])?(?P<mant2>\d+(?:\.\d+)?)[eE](?P<exp2>[-+−]?\d+)(?![\w.])"
    r"|(?<![\w.])(?P<sign3>[-−])?(?P<base>10|2)\^\{?(?P<exp3>[-−]?\d+)\}?"
)
PLAIN = re.compile(
    r"(?<![\w.^_/\\#@-])(?P<sign>(?<![\w)}\]])[-−](?=\d))?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<after>[%\w]*)"
)
UNITS = {"", "%", "x", "ms", "s", "us", "µs", "ns", "kb", "mb", "gb", "kib", "mib", "gib", "tib", "k", "m", "d"}


def _float(s: str) -> float:
    return float(s.replace("−", "-").replace(",", ""))


def clean(text: str) -> str:
    r"""The text with what is not a claim blanked out (keeps offsets): links' targets, roles' targets, URLs,
    HTML tags, subscripts in math; 100\,000 is read as 100,000."""

    def blank(m: re.Match) -> str:
        return " " * len(m.group(0))

    text = re.sub(r"(\d)\\,(\d{3})\b", r"\1,\2", text)
    text = re.sub(r"https?://\S+", blank, text)
    text = re.sub(r"\]\([^)]*\)", blank, text)  # [text](target)
    text = re.sub(r"\{(?:doc|ref|numref|cite|cite:p|cite:t|eq|download|glue:text|glue)\}`[^`]*`", blank, text)
    text = re.sub(r"<[^>]+>", blank, text)  # HTML tags
    text = re.sub(  # math subscripts: indices, not quantities
        r"(?<!\\)\$[^$]+\$", lambda m: re.sub(r"_\{[^}]*\}|_\d+|_[a-zA-Z]", blank, m.group(0)), text
    )
    text = re.sub(r"[\u2080-\u2089]+", blank, text)  # e₁
    text = re.sub(r"\\(?:frac|sqrt|mathbb|mathbf|operatorname|text|mathrm)\b", blank, text)
    return text


def _spans(pattern: str, text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(pattern, text, re.S)]


def numbers(text: str) -> list[Number]:
    """The numbers written in a (cleaned) text, digits only ('two heads' is not read), with the precision written."""
    found: list[Number] = []
    taken: list[tuple[int, int]] = []
    for m in SCI.finditer(text):
        if m.group("base"):
            mant, exp, sign = m.group("base"), m.group("exp3"), m.group("sign3")
            value = (-1.0 if sign else 1.0) * float(int(mant)) ** _float(exp)
            sig = 1
        else:
            mant = m.group("mant") or m.group("mant2")
            exp = m.group("exp") or m.group("exp2")
            sign = m.group("sign") or m.group("sign2")
            value = (-1.0 if sign else 1.0) * _float(mant) * 10.0 ** _float(exp)
            sig = len(mant.replace(".", "").lstrip("0"))
        found.append(Number(m.group(0).strip(), value, sig, scientific=True, start=m.start()))
        taken.append((m.start(), m.end()))
    for m in PLAIN.finditer(text):
        if any(a <= m.start("num") < b for a, b in taken):
            continue
        after = m.group("after")
        if after.lower() not in UNITS:  # float32, 2D, 1st, d2l, 7B: part of a name, not a quantity
            continue
        num = m.group("num")
        value = _float(num)
        if m.group("sign"):
            value = -value
        digits = len(num.split(".")[1]) if "." in num else 0
        found.append(Number(m.group(0).strip(), value, digits, percent=after == "%", start=m.start()))
    math_spans = _spans(r"(?<!\\)\$[^$]+\$", text)
    code_spans = _spans(r"`[^`]+`", text)
    for n in found:
        n.in_math = any(a < n.start < b for a, b in math_spans)
        n.in_code = any(a < n.start < b for a, b in code_spans)
    return sorted(found, key=lambda n: n.start)


OUT_NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w])")


def output_values(text: str) -> list[float]:
    """Every number printed in an output (1,234 read as 1234)."""
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    values = []
    for m in OUT_NUMBER.finditer(text):
        try:
            values.append(float(m.group(0).replace("−", "-")))
        except ValueError:
            pass
    return values


def _close(number: Number, v: float, approximate: bool) -> bool:
    target = number.value
    if not math.isfinite(v):
        return False
    if v == target:
        return True
    if number.scientific:
        if target == 0 or v == 0 or (v > 0) != (target > 0):
            return False
        sig = max(number.digits, 1)
        return f"{v:.{sig - 1}e}" == f"{target:.{sig - 1}e}"
    if number.digits == 0 and abs(target) < 10 and not approximate:
        return False  # a small integer matches only itself: 3 is not 3.4
    if abs(v - target) <= 0.5 * 10.0**-number.digits * (1 + 1e-9):
        return True
    if approximate and number.digits == 0 and abs(target) >= 100:  # "about 500" for 487: 500 has one significant digit
        written = str(int(abs(target)))
        mag = 10 ** (len(written) - len(written.rstrip("0")))
        return round(v / mag) * mag == target
    return False


def matches(number: Number, value: float, approximate: bool) -> bool:
    """Whether an output value is the prose's number, to the precision the prose writes it with (a percentage
    also matches the fraction: 67% for 0.6652)."""
    return _close(number, value, approximate) or (number.percent and _close(number, value * 100, approximate))


def literal_values(code: str) -> set[float]:
    """The numbers a code text writes (literals)."""
    values = set()
    for m in re.finditer(r"(?<![\w.])(\d+\.?\d*(?:[eE][-+]?\d+)?)(?![\w])", code):
        try:
            values.add(float(m.group(1)))
        except ValueError:
            pass
    for m in re.finditer(r"(?<![\w.])(\d+)\s*\*\*\s*(\d+)", code):  # 2**20
        values.add(float(int(m.group(1)) ** int(m.group(2))))
    return values


def assert_lines(code: str) -> str:
    return "\n".join(
        line for line in code.splitlines() if re.search(r"\bassert\b|assert_close|isclose|allclose|approx", line)
    )


# -------------------------------------------------------------------------------------------------- the rules

STRUCTURE = re.compile(
    r"(?:chapters?|ch\.|part|parts|exercises?|sections?|§|equation|eq\.|steps?|figure|fig\.|appendix|questions?|"
    r"assignments?|lines?|pages?|items?|cells?|issue|PEP|version|v)\s*[\s(]*$",
    re.I,
)
# the later numbers of "chapters 3, 5 and 7", "sections 2 and 4"
LISTED_REFERENCE = re.compile(
    r"\b(?:chapters|parts|exercises|sections|steps|questions|assignments)\s+"
    r"\d+(?:\s*,\s*\d+)*\s*(?:,|and|or|to|–|-)\s*$",
    re.I,
)
APPROX = re.compile(
    r"(about|around|roughly|approximately|nearly|almost|~|≈|\\approx|\\sim|close to|some)\s*\$?\s*$", re.I
)
COMPARATIVE = re.compile(
    r"\b(larger|smaller|bigger|greater|less|fewer|more|higher|lower|faster|slower|longer|shorter|broader|"
    r"narrower|sharper|flatter|wider|above|below|exceeds?|beyond|twice|half|double|triple|quadratic(?:ally)?|"
    r"linear(?:ly)?|dominates?|outperforms?|beats?|worse|better|best|worst|most|least|largest|smallest|highest|"
    r"lowest|fastest|slowest|times|orders? of magnitude)\b|≈|\\approx|~\s?\d|×|\\times|%|≪|≫|\\ll\b|\\gg\b",
    re.I,
)


MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
MODELS = r"(?:Llama|GPT|Mistral|BERT|T5|Gemma|Qwen|Falcon|PaLM|OPT|Llama \d)"
IMPERATIVE = re.compile(
    r"^\s*(?:\d+[.)]\s*)?(?:\*\*[^*]*\*\*\s*)?(?:(?:then|now|next|also|first),?\s+)?(?:change|generate|process|multiply|count|take|plot|write|replace|"
    r"run|try|set|use|add|train|repeat|compute|measure|make|give|find|time|draw|implement|show|predict|compare|"
    r"modify|build|increase|decrease|double|halve|evaluate|print|create|pick|choose|apply|vary|extend)\b",
    re.I,
)


def rule(text: str, number: Number, section: str = "") -> str | None:
    """Why a number is not a quantity the page must show, or None."""
    start = number.start + (1 if number.text[:1] in "-−" else 0)
    before = text[:start]
    after = text[start + len(number.text.lstrip("-−")) :]
    v = number.value
    if re.fullmatch(r"\s*#*\s*", before) and re.match(r"[.)]\s", after):
        return "item number of a list"
    if re.search(r"\d{4}-\d{2}-$|\d{4}-$", before) or re.match(r"-\d{2}-\d{2}", after):
        return "a date"
    if (
        number.digits == 0
        and 1900 <= v <= 2030
        and (
            re.search(r"(et al\.?,?|\(|,|\bin|from|of|since|\d{4}[;,]|" + MONTHS + r")\s*$", before, re.I)
            or re.match(r"[a-z]?\)", after)
        )
    ):
        return "a year (of a publication or an event)"
    if STRUCTURE.search(before) or (number.digits == 0 and LISTED_REFERENCE.search(before)):
        return "a reference to a chapter, part, exercise, section, step or equation"
    if (
        number.digits == 0
        and 0 <= v < 100
        and re.search(
            r"\b(?:keys?|quer(?:y|ies)|heads?|rows?|columns?|positions?|steps?|layers?|tokens?|pairs?|entry|entries|"
            r"blocks?|sequences?|annotations?|features?|indices|index|cells?|panels?)\s+"
            r"(?:[-−]?\d+\s*(?:,|and|to|–|-|or|\.\.)\s*)*$",
            before,
            re.I,
        )
    ):
        return "an index naming a key, query, head, row, column or position (checked with the figure or printout)"
    if (
        re.search(MODELS + r"\s*$", before)
        or re.search(r"\b(Llama|Mistral)\b[^.]{0,12}$", before)
        and re.match(r"[Bb]\b", after)
    ):
        return "part of a model's name"
    if re.search(r"(?:torch|python|pytorch|numpy|jupyter-book|sphinx|d2l|cuda|nbgrader)\s*[=v]*\s*$", before, re.I):
        return "a software version"
    if re.match(r"\.\d+\.\d+", after) or re.search(r"\d+\.\d+\.$", before):
        return "a software version"
    if number.in_code and re.search(r"`[^`]*\w=[-−]?$", before):
        return "a default or argument of a signature written as code"
    if re.search(r"(?:port|:)\s*$", before) and v > 1000:
        return "a network port"
    if number.in_math and number.digits == 0 and abs(v) <= 10 and not number.scientific:
        # a constant of a formula (1/(1-p), 2\ln n, n - 1 - i), not a value the formula takes
        prev = before.rstrip()[-1:] if before.rstrip() else ""
        nxt = after.lstrip()[:1]
        if not re.search(r"(=|\\approx|\\pm|\\sim|\\le|\\ge|\\leq|\\geq|<|>)\s*[-−]?$", before) and (
            (prev and prev in "+-−/*^{") or (nxt and nxt in "+-−/*^}") or nxt.isalpha() or nxt == "\\"
        ):
            return "a constant of a formula"
    if section.lower().startswith("exercise") or re.search(r"^\s*\d+\.\s", text) and "?" in text:
        sentence = sentence_around(text, number.start)
        if IMPERATIVE.search(sentence) or sentence.rstrip().endswith("?"):
            return "a setting an exercise asks the reader to try (not a claim)"
    return None


def load_whitelist(path: Path = WHITELIST) -> dict[str, list[dict]]:
    """{page: [{number, reason, context?}]}; '*' applies to every page."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    for page, entries in data.items():
        for entry in entries:
            assert entry.get("reason"), f"whitelist entry {page}: {entry} gives no reason"
    return data


def check_whitelist(whitelist: dict, root: Path = ROOT) -> list[str]:
    """Every entry with a `check` (a Python expression) must compute the number it explains, to the digits written:
    a fact about the course (a time limit, a count of attacks) or arithmetic (e^2) stays true or fails a test."""
    import importlib

    for extra in (str(root), str(root / "tests")):
        if extra not in sys.path:
            sys.path.insert(0, extra)
    env = {"math": math, "json": json, "re": re, "ROOT": root, "Path": Path, "importlib": importlib}
    wrong = []
    for page, entries in whitelist.items():
        for entry in entries:
            if "check" not in entry:
                continue
            value = float(eval(entry["check"], env))  # the whitelist is the project's own file, like a test
            for written in entry["number"] if isinstance(entry["number"], list) else [entry["number"]]:
                found = numbers(clean(str(written)))
                if not found or not any(_close(n, value, True) for n in found):
                    wrong.append(f"{page}: {written} but {entry['check']} = {value}")
    return wrong


def whitelisted(whitelist: dict, page: str, text: str, number: Number) -> str | None:
    """The reason the whitelist gives for this number (as written) on this page, or on every page ('*')."""
    for entry in whitelist.get(page, []) + whitelist.get("*", []):
        written = [str(x) for x in (entry["number"] if isinstance(entry["number"], list) else [entry["number"]])]
        if number.text.lstrip("+") not in written:
            continue
        context = entry.get("context")
        if context and context.lower() not in " ".join(text.split()).lower():
            continue
        return entry["reason"]
    return None


# ------------------------------------------------------------------------------------------------- the outputs


def _has_outputs(nb: dict) -> bool:
    return any(cell.get("outputs") for cell in nb.get("cells", []))


def executed_notebook(page: str, executed: Path = EXECUTED) -> dict | None:
    """The page's executed notebook, with its outputs: `_build/jupyter_execute/<page>.ipynb`, or, where that file was
    written from jupyter-cache without outputs (a page taken from the cache by a warm rebuild), the cache's own copy
    (`_build/.jupyter_cache`), used only when its code cells are the page's current ones. None when not built."""
    nb_path = executed / f"{page}.ipynb"
    if not nb_path.exists():
        nb_path = executed / (page.removeprefix("book/") + ".ipynb")
    nb = json.loads(nb_path.read_text()) if nb_path.exists() else None
    if nb is not None and _has_outputs(nb):
        return nb
    cache_dir = executed.parent / ".jupyter_cache"
    if cache_dir.is_dir():
        from jupyter_cache import get_cache

        cache = get_cache(cache_dir)
        records = [r for r in cache.list_cache_records() if r.uri.endswith(f"/{page}.md")]
        if records:
            cached = cache.get_cache_bundle(max(records, key=lambda r: r.pk).pk).nb
            source = executed.parent.parent / f"{page}.md"
            current = parse_page(source, executed.parent.parent).code if source.exists() else None
            cached_code = [c.source.strip() for c in cached.cells if c.cell_type == "code"]
            if current is None or [c.strip() for c in current] == cached_code:
                return json.loads(json.dumps(cached))
    return nb


def executed_outputs(page: str, executed: Path = EXECUTED) -> str | None:
    """The text of every output of the page's executed notebook (None when the book was not built)."""
    nb = executed_notebook(page, executed)
    if nb is None:
        return None
    parts = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("name") == "stderr":  # progress bars and warnings: their numbers are no evidence
                continue
            if "text" in out:
                parts.append("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
            for mime in ("text/plain", "text/markdown", "text/html", "text/latex"):
                data = out.get("data", {}).get(mime)
                if data is not None and "image/png" not in out.get("data", {}):
                    parts.append("".join(data) if isinstance(data, list) else data)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------- the audit


@dataclass
class Claim:
    page: str
    kind: str
    line: int
    sentence: str
    number: str
    evidence: str  # output | assert | code | include | rule | whitelist | (empty: unexplained)
    why: str = ""


def sentence_around(text: str, start: int) -> str:
    """The sentence (or clause, up to ': ' or '; ') that holds an offset of a text."""
    bounds = [m.end() for m in re.finditer(r"[.;:?!](?=\s)", text)]
    left = max((b for b in bounds if b <= start), default=0)
    right = min((b for b in bounds if b > start), default=len(text))
    return text[left:right].strip()


def assignment_points(page: str, root: Path = ROOT) -> dict[str, list[int]]:
    """{assignment: [points of each graded cell]} for the assignment a page belongs to (all of them on pages that
    belong to none)."""
    points = {}
    for nb_path in sorted((root / "solutions").glob("*/*.ipynb")):
        nb = json.loads(nb_path.read_text())
        cells = [c.get("metadata", {}).get("nbgrader", {}).get("points") for c in nb.get("cells", [])]
        points[nb_path.parent.name] = [p for p in cells if p]
    parts = page.split("/")
    own = parts[-1] if parts[1:2] == ["assignments"] else parts[1] if len(parts) > 2 else ""
    return {own: points[own]} if own in points else points


def points_evidence(text: str, number: Number, points: dict[str, list[int]]) -> str | None:
    """A number of points: the total of an assignment, or of consecutive graded cells (a part)."""
    after = text[number.start + len(number.text) :]
    if not re.match(r"\s*(?:-|\s)?points?\b", after) or number.digits:
        return None
    for name, cells in points.items():
        if number.value == sum(cells):
            return f"the total points of solutions/{name}"
        runs = {sum(cells[i:j]) for i in range(len(cells)) for j in range(i + 1, len(cells) + 1)}
        if number.value in runs:
            return f"the points of consecutive graded cells (a part) of solutions/{name}"
    return None


def audit_page(
    page: Page, outputs: str | None, whitelist: dict, root: Path = ROOT, chapter: dict[str, str] | None = None
) -> list[Claim]:
    """The claims of one page; `chapter` holds the outputs of the other pages of its chapter (a summary restates
    what they print)."""
    out_values = output_values(outputs or "")
    chapter_values = {name: output_values(text) for name, text in (chapter or {}).items()}
    code = "\n".join(page.code)
    code_values = literal_values(code)
    assert_values = literal_values(assert_lines(code))
    include_values = set().union(*(literal_values(t) for t in page.includes)) if page.includes else set()
    points = assignment_points(page.name, root)
    claims = []
    for t in page.texts:
        text = clean(t.text)
        for n in numbers(text):
            before = text[: n.start]
            approximate = bool(APPROX.search(before))
            sentence = " ".join(sentence_around(text, n.start).split())
            line = t.line + text[: n.start].count("\n")
            why = rule(text, n, t.section)
            if why:
                evidence = "rule"
            elif any(matches(n, v, approximate) for v in out_values):
                evidence, why = "output", "printed by the page"
            elif any(matches(n, v, False) for v in assert_values):
                evidence, why = "assert", "checked by an assert of the page"
            elif not page.code and (
                chapter_page := next(
                    (p for p, vals in chapter_values.items() if any(matches(n, v, approximate) for v in vals)), None
                )
            ):
                evidence, why = "chapter", f"printed by {chapter_page} (this page, a summary, has no code)"
            elif (w := points_evidence(text, n, points)) is not None:
                evidence, why = "points", w
            elif (w := whitelisted(whitelist, page.name, t.text, n)) is not None:
                evidence, why = "whitelist", w
            elif n.value in code_values or abs(n.value) in code_values:
                evidence, why = "code", "set by the page's code"
            elif n.value in include_values:
                evidence, why = "include", "in the code the page includes"
            else:
                evidence, why = "", "UNEXPLAINED"
            claims.append(Claim(page.name, t.kind, line, sentence, n.text, evidence, why))
    return claims


NOT_COMPARATIVE = re.compile(
    r"(?:shown|printed|output|cells?|code|page|figure|plot|listed|defined|see|as|table|one|lines?|list|step|"
    r"sections?|example|paragraph|function|mask|box|exercise)\s+(?:above|below)\b"
    r"|\b(?:above|below)\s*[:.,)]|\b(?:above|below)\s+(?:the|this|it|them|they|with|we|you|in|for|and|from|each|"
    r"is|are|prints?|shows?|draws?|computes?|checks?|builds?|runs?|repeats?|compares?)\b"
    r"|\w\s*\\times\s*\w|`[^`]*`|\bLinear\b|\blinear\s+(?:layers?|projections?|maps?|algebra|"
    r"transformations?|functions?|combinations?|module)\b|\bmost\s+of\b|\bat\s+(?:most|least)\b|"
    r"\bmore\s+(?:than\s+once|on\b|about\b|in\b)|\bonce\s+more\b|\bno\s+(?:more|longer)\b|\bany\s+more\b"
    r"|\blonger\b\s+(?:sequences?|inputs?|prompts?)",
    re.I,
)


def comparisons(page: Page) -> list[tuple[str, int, str, str]]:
    """(kind, line, word, sentence) of every comparative phrase (positional 'above'/'below', shapes 'n × d',
    nn.Linear and the like are left out)."""
    found = []
    for t in page.texts:
        text = clean(t.text)
        noise = [(m.start(), m.end()) for m in NOT_COMPARATIVE.finditer(text)]
        for m in COMPARATIVE.finditer(text):
            if any(a <= m.start() < b for a, b in noise):
                continue
            line = t.line + text[: m.start()].count("\n")
            found.append((t.kind, line, m.group(0), " ".join(sentence_around(text, m.start()).split())))
    return found


def audit(root: Path = ROOT, executed: Path | None = None, pages: list[str] | None = None) -> list[Claim]:
    executed = executed or root / "_build" / "jupyter_execute"
    whitelist = load_whitelist(root / "tools" / "claims_whitelist.yml")
    claims = []
    every = toc_pages(root)
    outputs = {name: executed_outputs(name, executed) for name in every}
    for name in pages or every:
        page = parse_page(root / f"{name}.md", root)
        chapter = {
            other: text
            for other, text in outputs.items()
            if other != name and text and Path(other).parent == Path(name).parent and Path(name).parent.name != "book"
        }
        claims += audit_page(page, outputs[name], whitelist, root, chapter)
    return claims


def figures(page: str, out: Path, executed: Path = EXECUTED) -> list[dict]:
    """Write every figure of a page's executed notebook into `out` (PNG or SVG), with the caption, the alt text and
    the text the same cell printed: the material for checking each figure against what its caption and alt text
    claim."""
    import base64

    nb = executed_notebook(page, executed)
    if nb is None:
        return []
    found = []
    for index, cell in enumerate(nb.get("cells", [])):
        mystnb = (cell.get("metadata") or {}).get("mystnb") or {}
        printed = []
        images = []
        for o in cell.get("outputs", []):
            if "text" in o:
                printed.append("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
            data = o.get("data", {})
            if "image/png" in data:
                images.append(("png", base64.b64decode("".join(data["image/png"]))))
            elif "image/svg+xml" in data:
                images.append(("svg", "".join(data["image/svg+xml"]).encode()))
        for k, (ext, blob) in enumerate(images):
            stem = out / f"{page.replace('/', '--')}--{index}-{k}"
            stem.parent.mkdir(parents=True, exist_ok=True)
            path = stem.with_suffix("." + ext)
            path.write_bytes(blob)
            found.append(
                {
                    "page": page,
                    "file": path.name,
                    "caption": ((mystnb.get("figure") or {}).get("caption") or "").strip(),
                    "alt": ((mystnb.get("image") or {}).get("alt") or "").strip(),
                    "printed": "".join(printed).strip()[-1500:],
                }
            )
    return found


def svg_to_png(paths: list[Path]) -> None:
    """Render SVG figures into PNG files beside them, with Debian's chromium (tests/chromium.py's arguments)."""
    if not paths:
        return
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from chromium import launch

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        for path in paths:
            page.set_content(f"<body style='margin:0;background:white'>{path.read_text()}</body>")
            page.locator("svg").first.screenshot(path=str(path.with_suffix(".png")))
        browser.close()


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true", help="every claim with its evidence (Markdown)")
    parser.add_argument("--comparisons", action="store_true", help="every comparative phrase (Markdown)")
    parser.add_argument("--summary", action="store_true", help="counts per page and evidence")
    parser.add_argument("--figures", metavar="DIR", help="write every figure, caption and alt text into DIR")
    parser.add_argument("pages", nargs="*", help="book/... pages (default: every page of _toc.yml)")
    args = parser.parse_args(argv)
    pages = args.pages or None
    if args.figures:
        out = Path(args.figures)
        index = []
        for name in pages or toc_pages():
            for f in figures(name, out):
                index.append(
                    f"## {f['file']}\n\ncaption: {f['caption']}\n\nalt: {f['alt']}\n\n```\n{f['printed']}\n```\n"
                )
        (out / "index.md").write_text("\n".join(index))
        svg_to_png(sorted(out.glob("*.svg")))
        print(f"{len(index)} figures in {out}")
        return 0
    if args.comparisons:
        print("| page | line | in | word | text |\n|---|---|---|---|---|")
        for name in pages or toc_pages():
            for kind, line, word, text in comparisons(parse_page(ROOT / f"{name}.md")):
                print(f"| {name} | {line} | {kind} | {_cell(word)} | {_cell(text)} |")
        return 0
    claims = audit(pages=pages)
    missing = [p for p in (pages or toc_pages()) if parse_page(ROOT / f"{p}.md").code and executed_outputs(p) is None]
    if missing:
        print(f"no executed notebook for {len(missing)} pages (run `make book`): {missing[:5]}", file=sys.stderr)
    if args.summary:
        from collections import Counter

        counts = Counter((c.evidence or "UNEXPLAINED") for c in claims)
        print(dict(counts))
    if args.all:
        print("| page | line | in | number | evidence | claim |\n|---|---|---|---|---|---|")
        for c in claims:
            ev = f"{c.evidence}: {c.why}" if c.evidence in ("rule", "whitelist") else (c.evidence or "**none**")
            print(f"| {c.page} | {c.line} | {c.kind} | {_cell(c.number)} | {_cell(ev)} | {_cell(c.sentence)} |")
        return 0
    bad = [c for c in claims if not c.evidence]
    for c in bad:
        print(f"{c.page}.md:{c.line} [{c.kind}] {c.number!r}: {c.sentence}")
    print(f"{len(bad)} unexplained of {len(claims)} numbers", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
