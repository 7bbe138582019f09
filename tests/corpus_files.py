"""The shared real-world corpus (../shared/corpus), where it exists beside the project."""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*")
                  if p.is_file() and p.name not in ("LICENSE", "README.md"))


def as_relayed(raw: bytes) -> bytes:
    """The bytes as a relaying MTA sends them: CRLF line ends."""
    return re.sub(rb"\r?\n", b"\r\n", raw)
