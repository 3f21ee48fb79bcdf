"""Names that come from outside: student and assignment ids, and text bound for a spreadsheet.

One rule for ids, shared by `collect` and `grade`: 1 to 64 characters, letters, digits, `.`, `_`, `-`, starting
with a letter or digit (no `..`, no `/`, no spaces, no control characters, nothing a spreadsheet evaluates).
Folders in `submitted/` that break it, and links anywhere under `submitted/`, are refused and reported, never
graded or followed.
"""

from __future__ import annotations

import re

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def valid_id(name) -> bool:
    return isinstance(name, str) and ID.fullmatch(name) is not None and ".." not in name


def why_invalid(name: str) -> str:
    shown = CONTROL.sub("?", name)[:40]
    return f"{shown!r} is not a valid id (1-64 letters, digits, '.', '_', '-'; first a letter or digit)"


def csv_cell(value):
    """A value safe in a spreadsheet: control characters replaced, and text that a spreadsheet would evaluate
    (starting with = + - @, or a tab or carriage return) prefixed with an apostrophe. Numbers stay numbers."""
    if not isinstance(value, str):
        return value
    value = CONTROL.sub(" ", value)
    if value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def escape(text, limit: int = 300) -> str:
    """A student-controlled string made safe to show: printable ASCII only, one line, at most `limit` chars."""
    text = _NOT_PRINTABLE.sub("?", str(text).replace("\n", " "))
    return text if len(text) <= limit else text[: limit - 3] + "..."
