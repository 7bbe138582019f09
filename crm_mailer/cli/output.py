"""Command output: JSON lines for scripts, aligned tables for people; always to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def print_rows(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> None:
    """`json`: one object per line; `table`: the named columns, aligned, with a count."""
    out = sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [min(60, max([len(c), *(len(r[i]) for r in table)])) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
              + "\n")
    for r in table:
        out.write("  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                  + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(cell(v) if not isinstance(v, dict) else
                        ":".join(map(str, v.values())) for v in value)
    return " ".join(str(value).split())
