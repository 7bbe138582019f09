"""The header block as a mail client reads it: bounded, linear, no hidden fields."""

from __future__ import annotations

import time

import pytest

from crm_mailer.errors import MessageMalformed, MessageTooLarge, SenderNotProven
from crm_mailer.mail.header_block import read_header_block
from crm_mailer.mail.parse import Limits, header_block, message_key, parse_message, sender_claim


def block(raw: bytes, max_size: int = 262_144, max_fields: int = 1000):  # type: ignore[no-untyped-def]
    return read_header_block(raw, max_size=max_size, max_fields=max_fields)


def test_fields_in_order_with_folds_and_the_body_offset() -> None:
    raw = b"From: a@b\r\nTo: x,\r\n\ty@z\r\nSubject: s\r\n\r\nbody"
    found = block(raw)
    assert found.fields == (("from", b"a@b"), ("to", b"x,\r\n\ty@z"), ("subject", b"s"))
    assert raw[found.body_start:] == b"body"


def test_unix_line_ends_are_read_as_line_ends() -> None:
    found = block(b"From: a@b\nTo: c@d\n\nbody\n")
    assert [name for name, _ in found.fields] == ["from", "to"]


def test_a_bare_cr_hiding_a_from_line_is_refused() -> None:
    raw = b"X-Note: harmless\rFrom: alice@xyz.de\r\nFrom: evil@evil.com\r\n\r\nx"
    with pytest.raises(MessageMalformed, match="hides a 'From' field behind a bare CR or LF"):
        block(raw)


def test_a_bare_lf_hiding_a_field_in_crlf_mail_is_refused() -> None:
    with pytest.raises(MessageMalformed, match="bare CR or LF"):
        header_block(b"Subject: hi\nFrom: alice@xyz.de\r\nFrom: evil@evil.com\r\n\r\nx",
                     smtp=True)


def test_a_bare_cr_inside_text_is_a_space_for_the_parser_too() -> None:
    raw = b"Subject: Lead\r11111\r\nFrom: alice@xyz.de\r\n\r\nHallo\r\n"
    parsed = parse_message(raw)
    assert parsed.subject.split() == ["Lead", "11111"]
    assert parsed.from_address == "alice@xyz.de" and parsed.body == "Hallo"


def test_the_header_block_size_limit_is_named() -> None:
    raw = b"Subject: x\r\nX-Big: " + b"y" * 5000 + b"\r\n\r\nbody"
    with pytest.raises(MessageTooLarge, match=r"exceeds 1024 bytes \(max_header_size\)"):
        block(raw, max_size=1024)


def test_a_long_body_without_a_blank_line_is_no_oversized_header() -> None:
    raw = b"Subject: x\r\n" + b"y" * 5000
    assert block(raw, max_size=1024).fields == (("subject", b"x"),)


def test_the_field_count_limit_is_named() -> None:
    with pytest.raises(MessageMalformed, match=r"more than 10 header fields \(max_headers\)"):
        block(b"X: y\r\n" * 11 + b"\r\n", max_fields=10)


# Time is this thread's CPU time: the work done, which a busy machine does not stretch.
def test_a_header_bomb_is_read_in_linear_time() -> None:
    raw = b"X: y\r\n" + b" y\r\n" * 60_000 + b"\r\n"
    started = time.thread_time()
    block(raw)
    assert time.thread_time() - started < 1


def test_sixty_thousand_commas_are_read_fast_and_refused_by_count_only_when_addresses() -> None:
    raw = b"From: alice@xyz.de\r\nTo: " + b"," * 60_000 + b"\r\n\r\nx"
    started = time.thread_time()
    assert parse_message(raw).to == ()
    many = b"From: alice@xyz.de\r\nTo: " + b"a@b.de," * 2000 + b"\r\n\r\nx"
    with pytest.raises(MessageMalformed, match=r"more than 1000 addresses"):
        parse_message(many)
    assert time.thread_time() - started < 1


def test_deeply_nested_comments_do_not_recurse() -> None:
    raw = b"From: alice@xyz.de\r\nTo: " + b"(" * 500 + b"bob@acme.com" + b")" * 500 + b"\r\n\r\n"
    assert parse_message(raw).to == ()  # the address was inside the comment
    raw = b"From: alice@xyz.de\r\nTo: bob@acme.com " + b"(" * 5000 + b"\r\n\r\n"
    assert parse_message(raw).to == ("bob@acme.com",)


@pytest.mark.parametrize("header", [
    b"From: alice@xyz.de\r\nFrom: evil@evil.com\r\n",
    b"From: alice@xyz.de, evil@evil.com\r\n",
    b"From: alice@xyz.de evil@evil.com\r\n",
    b"From: Team: alice@xyz.de, evil@evil.com;\r\n",
])
def test_an_ambiguous_from_is_no_sender_claim(header: bytes) -> None:
    with pytest.raises(SenderNotProven, match="ambiguous"):
        sender_claim(header_block(header + b"\r\nx"))


def test_one_from_address_is_the_claim() -> None:
    assert sender_claim(header_block(b'From: "Alice, A." <Alice@XYZ.de>\r\n\r\n')) == \
        "alice@xyz.de"


def test_an_address_that_grows_past_the_limit_when_lower_cased_is_no_address() -> None:
    raw = ("From: " + "İ" * 200 + "@xyz.de\r\n\r\n").encode()
    assert sender_claim(header_block(raw)) is None


def key(value: bytes) -> str:
    return message_key(header_block(b"Message-ID: " + value + b"\r\n\r\n"), b"")[0]


def test_message_ids_differing_in_one_non_ascii_letter_are_two_keys() -> None:
    assert key("<ä42@r>".encode()) == "ä42@r"
    assert key("<ö42@r>".encode()) == "ö42@r"


def test_a_nul_byte_makes_another_message_id() -> None:
    assert key(b"<nul\x00id@x>") != key(b"<nulid@x>")


@pytest.mark.parametrize("pair", [
    (b"<caf\xe9@x>", b"<caf\xe8@x>"),  # Latin-1 bytes, not UTF-8
    (b"<a b@x>", b"<ab@x>"),
    (b"<caf%E9@x>", b"<caf\xe9@x>"),  # the escape of one is the other's literal text
    (b"<x@escaped.crm-mailer.invalid>", b"<x@escaped.crm-mailer.invalid\x01>"),
])
def test_distinct_message_ids_never_share_a_key(pair: tuple[bytes, bytes]) -> None:
    assert key(pair[0]) != key(pair[1])


def test_a_message_id_is_read_the_same_however_it_is_folded() -> None:
    assert key(b"\r\n <abc@x>") == key(b"<abc@x>") == "abc@x"


def test_a_very_long_message_id_is_hashed_stably_and_exactly() -> None:
    long_a, long_b = b"<" + b"a" * 400 + b"@x>", b"<" + b"a" * 399 + b"b@x>"
    assert len(key(long_a)) <= 255 and key(long_a) == key(long_a) != key(long_b)


def test_limits_are_configurable() -> None:
    raw = b"From: alice@xyz.de\r\nTo: a@b.de, c@d.de, e@f.de\r\n\r\nx"
    with pytest.raises(MessageMalformed, match=r"more than 2 addresses \(max_addresses"):
        parse_message(raw, Limits(max_addresses_per_header=2))
