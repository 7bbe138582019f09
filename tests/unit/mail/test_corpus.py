"""Every message of the shared real-world corpus parses into clean, decoded text."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_mailer.mail.parse import parse_message
from tests.corpus_files import CORPUS, corpus_files

FILES = corpus_files()
pytestmark = [pytest.mark.needs_corpus,
              pytest.mark.skipif(not FILES, reason=f"no corpus at {CORPUS}")]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_corpus_message_parses_cleanly(path: Path) -> None:
    raw = path.read_bytes()
    parsed = parse_message(raw)
    for text in (parsed.subject, parsed.body, parsed.message_id,
                 *(a.filename or "" for a in parsed.attachments)):
        text.encode("utf-8")  # no lone surrogates: storable in any database
        assert "\x00" not in text
        # U+FFFD only where the source itself holds one (as UTF-8 bytes or an entity).
        if "\ufffd" in text:
            assert "\ufffd".encode() in raw or b"&#65533;" in raw or b"=EF=BF=BD" in raw.upper()
    assert parsed.message_id and len(parsed.message_id) <= 255
    assert all("@" in address for address in (*parsed.to, *parsed.cc))
