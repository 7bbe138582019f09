"""Thread references: the IDs a reply names, nearest first, keyed exactly as stored IDs are."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_mailer.mail.header_block import HeaderBlock
from crm_mailer.mail.parse import DEFAULT_LIMITS, Limits, header_block, message_key, parse_message
from crm_mailer.mail.thread import (
    ESCAPED_ID_DOMAIN,
    LONG_ID_DOMAIN,
    MAX_REFERENCES,
    thread_references,
)

THREAD = Path(__file__).resolve().parents[3] / "fixtures" / "eml" / "conversation" / "thread"
ALICE_1 = "3f2a9c1e-7b4d-4e8a-9c21-5d6f7e8a9b0c@xyz.de"
BOB_1 = "AM9PR01MB72493D6E1F0A2B4C8D5E6F7A8B9C0D1E@AM9PR01MB7249.eurprd01.prod.exchangelabs.com"
ALICE_2 = "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f@xyz.de"
CAROL_1 = "8d4f2b1a-6c3e-4f5a-9b7d-2e1c0a9f8b6d@acme.com"
HANK_1 = "001a01dcb1f2$6b7c8d90$42859eb0$@globex.co.uk"
ALICE_3 = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d@xyz.de"

FIXTURES = {
    "thunderbird_reply.eml": (ALICE_2, BOB_1, ALICE_1),
    # Outlook wrote no In-Reply-To; Thread-Index names no message, so References decide.
    "outlook_reply_thread_index.eml": (ALICE_3, HANK_1, ALICE_1),
    "apple_mail_reply_all.eml": (ALICE_1,),
    # An ID folded in its middle is tried as read (the fold's blank kept, a tab escaped as
    # the parent's key would be) and without the blank; the In-Reply-To copy came first.
    "broken_references_folding.eml": (
        ALICE_2, "5c1d2e3f-4a5b-4c6d-8e7f- 9a0b1c2d3e4f@xyz.de", CAROL_1,
        f"AM9PR01MB72493D6E1F0A2B4C8D5E6F7A8B9C0D1E@AM9PR01MB72%0949.eurprd01.prod."
        f"exchangelabs.com@{ESCAPED_ID_DOMAIN}", BOB_1, ALICE_1),
    "references_without_brackets.eml": (ALICE_3, HANK_1, ALICE_1),
}


def references(headers: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, ...]:
    raw = headers.replace(b"\n", b"\r\n") + b"\r\n\r\nHallo\r\n"
    return thread_references(header_block(raw, limits))


def own_key(message_id: bytes) -> str:
    """The key the parent is stored under, read as ingest reads it."""
    raw = b"From: bob@acme.com\r\nMessage-ID: " + message_id + b"\r\n\r\nHallo\r\n"
    return parse_message(raw).message_id


def reply_reference(message_id: bytes, header: bytes = b"In-Reply-To") -> str:
    raw = (b"From: alice@xyz.de\r\nMessage-ID: <reply@xyz.de>\r\n" + header + b": "
           + message_id + b"\r\n\r\nDanke\r\n")
    return parse_message(raw).references[0]


def test_fixtures_cover_every_file() -> None:
    assert sorted(p.name for p in THREAD.glob("*.eml")) == sorted(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_references_nearest_first(name: str) -> None:
    assert parse_message((THREAD / name).read_bytes()).references == FIXTURES[name]


def test_in_reply_to_comes_before_references_read_from_the_end() -> None:
    assert references(b"References: <a@x> <b@x> <c@x>\nIn-Reply-To: <p@x>") == \
        ("p@x", "c@x", "b@x", "a@x")


def test_an_id_named_twice_keeps_its_nearest_place() -> None:
    assert references(b"In-Reply-To: <c@x>\nReferences: <a@x> <c@x> <b@x> <a@x>") == \
        ("c@x", "a@x", "b@x")


def test_no_thread_headers_give_no_references() -> None:
    assert references(b"Subject: hi") == ()
    assert references(b"In-Reply-To:\nReferences: <> < > ()") == ()


@pytest.mark.parametrize("odd_id", [
    pytest.param(b"<abc def@x.de>", id="space"),
    pytest.param("<grüße-ä@bücher.example>".encode(), id="utf8"),
    pytest.param(b"<caf\xe9@latin1.example>", id="latin1-byte"),
    pytest.param(b"<a\x00b@nul.example>", id="nul"),
    pytest.param(b"<" + b"x" * 300 + b"@long.example>", id="300-chars"),
    pytest.param(b"abc@x.de", id="no-brackets"),
    pytest.param(b"< padded@x.de >", id="blanks-inside-brackets"),
    pytest.param(f"<spoof@{ESCAPED_ID_DOMAIN}>".encode(), id="reserved-domain"),
    pytest.param(b"<x@y> (Alice's message)", id="trailing-comment"),
])
@pytest.mark.parametrize("header", [b"In-Reply-To", b"References"])
def test_reference_equals_the_parents_stored_key(odd_id: bytes, header: bytes) -> None:
    assert reply_reference(odd_id, header) == own_key(odd_id)


def test_long_id_is_matched_by_its_hash() -> None:
    key = own_key(b"<" + b"x" * 300 + b"@long.example>")
    assert key.endswith(f"@{LONG_ID_DOMAIN}")


@given(st.binary(min_size=1, max_size=400).filter(
    lambda b: not any(c in b for c in b"<>\r\n") and b.strip(b" \t")))
def test_any_bracketed_id_round_trips(exact: bytes) -> None:
    message_id = b"<" + exact + b">"
    assert reply_reference(message_id, b"References") == own_key(message_id)


def test_ids_without_brackets_are_split_on_blanks_and_commas() -> None:
    assert references(b"References: abc@x.de def@y.de,ghi@z.de") == \
        ("ghi@z.de", "def@y.de", "abc@x.de")


def test_words_and_comments_between_ids_are_skipped() -> None:
    assert references(
        b'In-Reply-To: Your message of "Tue, 10 Mar 2026 09:14" <p@x.de>\n'
        b"References: (thread of bob@acme.com) <a@x.de> junk ; <b@x.de> (Alice's)") == \
        ("p@x.de", "b@x.de", "a@x.de")


def test_a_bare_line_break_between_ids_separates_them() -> None:
    raw = b"From: a@x.de\r\nReferences: <a@x.de>\n<b@x.de>\r<c@x.de>\r\n\r\nHallo\r\n"
    assert thread_references(header_block(raw, smtp=True)) == ("c@x.de", "b@x.de", "a@x.de")


def test_an_id_folded_in_its_middle_is_also_tried_joined() -> None:
    assert references(b"References: <CAF=abc\n def@mail.gmail.com>") == \
        ("CAF=abc def@mail.gmail.com", "CAF=abcdef@mail.gmail.com")


def test_adjacent_ids_without_a_blank_are_two() -> None:
    assert references(b"References: <a@x.de><b@x.de>") == ("b@x.de", "a@x.de")


def test_an_unclosed_bracket_still_yields_the_id() -> None:
    assert references(b"In-Reply-To: <p@x.de") == ("p@x.de",)


def test_only_the_last_32_references_are_read() -> None:
    ids = b" ".join(b"<%d@x.de>" % n for n in range(10_000))
    found = references(b"References: " + ids)
    assert found == tuple(f"{n}@x.de" for n in range(9_999, 9_999 - MAX_REFERENCES, -1))


def test_in_reply_to_gives_at_most_its_first_32() -> None:
    ids = b" ".join(b"<%d@x.de>" % n for n in range(10_000))
    assert references(b"In-Reply-To: " + ids) == tuple(f"{n}@x.de" for n in range(32))


@pytest.mark.parametrize("value", [
    pytest.param(b"<a@x.de> " * 125_000, id="1MB-of-ids"),
    pytest.param(b"<" + b"a" * 1_000_000, id="1MB-unclosed-bracket"),
    pytest.param(b"(" * 1_000_000, id="1MB-open-parens"),
    pytest.param(b"(a" * 500_000, id="1MB-comment-starts"),
    pytest.param(b"a" * 1_000_000 + b"@x.de", id="1MB-bare-id"),
    pytest.param(b"<a \r\n" * 200_000 + b"<z@x.de>", id="1MB-broken-folds"),
    pytest.param(b"\x00" * 1_000_000, id="1MB-of-nul"),
])
def test_a_huge_references_header_is_read_in_linear_time(value: bytes) -> None:
    block = HeaderBlock((("references", value), ("in-reply-to", value)), 0)
    started = time.perf_counter()
    found = thread_references(block)
    assert time.perf_counter() - started < 2.0
    assert len(found) <= 4 * MAX_REFERENCES


def test_huge_references_keep_the_nearest_id() -> None:
    value = b"<old@x.de> " * 120_000 + b"<parent@x.de>"
    assert references(b"References: " + value, Limits(max_header_size=2_000_000))[0] == \
        "parent@x.de"


def test_nul_bytes_in_a_reference_are_escaped_like_the_parents_id() -> None:
    assert references(b"References: <a\x00b@x.de>") == (f"a%00b@x.de@{ESCAPED_ID_DOMAIN}",)


def test_message_key_and_references_use_one_keying() -> None:
    raw = b"Message-ID: <a b@x.de>\r\n\r\n"
    block = header_block(raw)
    assert message_key(block, raw)[0] == \
        thread_references(header_block(b"References: <a b@x.de>\r\n\r\n"))[0]
