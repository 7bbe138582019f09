"""Command output: JSON lines for scripts, aligned tables for people; always to stdout."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from crm_mailer.wording import counted

# C0 and C1 controls (ESC among them: terminal escape sequences) and the bidirectional
# overrides that reorder what a terminal shows. Newline and tab stay: text has lines.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
PLACEHOLDER = "\ufffd"


def json_line(row: dict[str, Any]) -> str:
    """One JSON object on a line; C1 and bidi controls escaped too (JSON escapes only C0)."""
    text = json.dumps(row, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def terminal_safe(text: str) -> str:
    """`text` with every control character replaced by a visible placeholder."""
    return _UNSAFE.sub(PLACEHOLDER, text)


class SafeOutput:
    """A text stream for people: whatever the mail held, no control sequence gets through."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(terminal_safe(text))


def print_rows(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> None:
    """`json`: one object per line; `table`: the named columns, aligned, with a count.

    JSON escapes control characters itself; the table replaces them.
    """
    if fmt == "json":
        for row in rows:
            sys.stdout.write(json_line(row))
        return
    out = SafeOutput(sys.stdout)
    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [min(60, max([len(c), *(len(r[i]) for r in table)])) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
              + "\n")
    for r in table:
        out.write("  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                  + "\n")
    out.write(f"({counted(len(rows), 'row')})\n")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(cell(v) if not isinstance(v, dict) else
                        ":".join(map(str, v.values())) for v in value)
    return " ".join(str(value).split())


def evidence_lines(evidence: list[dict[str, Any]]) -> list[str]:
    """Each matching step's finding and why, one line a step (pending show, explain)."""
    lines = []
    for step in evidence:
        detail = {k: v for k, v in step.items() if k not in ("step", "found")}
        why = detail.pop("why", None)
        rest = ", ".join(f"{k}={cell(v)}" for k, v in detail.items() if v not in (None, "", []))
        text = "; ".join(part for part in (str(why) if why else "", rest) if part)
        lines.append(f"  {step.get('step', '?'):<12} {cell(step.get('found'))}"
                     f"{'  (' + text + ')' if text else ''}")
    return lines
