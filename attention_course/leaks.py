"""Finding reference answers and hidden tests outside `solutions/`.

A leak (see the course's decisions): any hidden-test line, or any 3 consecutive lines of a reference answer
block, found in the site, in `exercises/`, in feedback or in the student repository. Lines are compared with
their whitespace collapsed, so re-indented or syntax-highlighted copies are found too.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from attention_course import notebooks as nbt

MIN_HIDDEN_LINE = 20  # shorter hidden-test lines (`else:`, `)`) say nothing about the tests
# Boilerplate that says nothing about the tests either, however long: entering a no-grad context.
BOILERPLATE = re.compile(r"^with torch\.(no_grad|inference_mode)\(\):$")


@dataclass(frozen=True)
class Secret:
    where: str  # notebook and cell it comes from
    kind: str  # "hidden test" or "reference answer"
    text: str  # one line (hidden tests) or three joined lines (answers), whitespace collapsed


def _squash(line: str) -> str:
    return " ".join(line.split())


def _code_part(line: str) -> str:
    """A squashed line without its trailing comment (pages and answers differ in comments, not in code)."""
    line = _squash(line)
    return line if line.startswith("#") else line.split(" #")[0].strip()


def secrets(solutions_dir: str | Path) -> list[Secret]:
    found: list[Secret] = []
    for path in sorted(Path(solutions_dir).rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = nbt.read(path)
        for cell in nb.cells:
            where = f"{path.name}:{nbt.nbgrader_meta(cell).get('grade_id', cell.get('id'))}"
            for block in nbt.hidden_blocks(cell.source):
                for line in block.splitlines():
                    line = _code_part(line)
                    if len(line) >= MIN_HIDDEN_LINE and not line.startswith("#") and not BOILERPLATE.match(line):
                        found.append(Secret(where, "hidden test", line))
            for block in nbt.solution_blocks(cell.source):
                lines = [_code_part(l) for l in block.splitlines() if l.strip() and not l.strip().startswith("#")]
                if len(lines) < 3:
                    found.append(Secret(where, "reference answer", "\n".join(lines)))
                for i in range(len(lines) - 2):
                    found.append(Secret(where, "reference answer", "\n".join(lines[i : i + 3])))
    return found


def text_of(path: Path) -> str:
    """Searchable text of a file: HTML without tags (highlighted code becomes plain lines), notebooks' sources
    and outputs as plain text, whitespace collapsed per line, trailing comments kept off."""
    raw = path.read_text(errors="replace")
    if path.suffix in (".html", ".htm"):
        raw = html.unescape(re.sub(r"<[^>]+>", "", raw))
    elif path.suffix == ".ipynb":
        import json

        try:
            nb = json.loads(raw)
            parts = []
            for cell in nb.get("cells", []):
                src = cell.get("source", "")
                parts.append("".join(src) if isinstance(src, list) else src)
                for out in cell.get("outputs", []):
                    for value in [out.get("text", "")] + list(out.get("data", {}).values()):
                        parts.append("".join(value) if isinstance(value, list) else str(value))
            raw = "\n".join(parts)
        except ValueError:
            pass
    lines = [_code_part(l) for l in raw.splitlines()]
    return "\n".join(l for l in lines if l)


def find_leaks(secret_list: list[Secret], files) -> list[tuple[Path, Secret]]:
    """Every (file, secret) pair where the secret's text occurs in the file."""
    leaks = []
    for path in files:
        path = Path(path)
        if not path.is_file() or path.suffix not in (".html", ".htm", ".ipynb", ".py", ".md", ".txt", ".js", ".json"):
            continue
        text = text_of(path)
        for secret in secret_list:
            if secret.text and secret.text in text:
                leaks.append((path, secret))
    return leaks
