"""The MIME tree: big payloads left out; names, types and exact sizes stay; one reading."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import re
import time
import tracemalloc
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_mailer.errors import MessageMalformed
from crm_mailer.mail import mime_tree as mime_tree_module
from crm_mailer.mail.mime_tree import CUT_FROM, TEXT_KEEP, MimeTree, mime_tree
from crm_mailer.mail.parse import header_block, parse_message
from tests.corpus_files import as_relayed, corpus_files


def with_attachment(payload: bytes, *, cte: str = "base64", body: str = "Hallo") -> bytes:
    message = EmailMessage()
    message["From"] = "alice@xyz.de"
    message["Subject"] = "XYZ Lead 11111"
    message.set_content(body)
    message.add_attachment(payload, maintype="application", subtype="pdf",
                           filename="Angebot.pdf", cte=cte)
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


@pytest.mark.parametrize("size", [CUT_FROM, CUT_FROM + 1, 10_000, 100_001, 100_002, 100_003])
@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
def test_a_cut_attachment_keeps_its_exact_decoded_size(size: int, cte: str) -> None:
    payload = os.urandom(size)
    parsed = parse_message(with_attachment(payload, cte=cte))
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == \
        ("Angebot.pdf", "application/pdf", size)
    assert parsed.body == "Hallo"


def tree(raw: bytes) -> MimeTree:
    return mime_tree(raw, header_block(raw), max_depth=50, max_parts=1000,
                     max_header_size=262_144)


def test_the_tree_leaves_the_payload_out_and_notes_its_size() -> None:
    built = tree(with_attachment(os.urandom(200_000)))
    text, attachment = built.message.get_payload()
    assert text.get_payload() == "Hallo\r\n" and attachment.get_payload() == ""
    assert attachment[built.size_header] == "200000"


def test_a_sender_cannot_forge_the_size_header() -> None:
    forged = b"X-Crm-Mailer-Size-0000000000000000: 999\r\n"
    raw = with_attachment(b"x" * 100).replace(b"Content-Disposition:", forged +
                                               b"Content-Disposition:", 1)
    assert parse_message(raw).attachments[0].size == 100


def test_a_huge_text_part_is_read_up_to_the_text_limit() -> None:
    line = "Zeile mit Text\n"
    parsed = parse_message(with_attachment(b"x", body=line * (2 * TEXT_KEEP // len(line))))
    assert TEXT_KEEP // 2 < len(parsed.body) <= TEXT_KEEP
    assert parsed.body.endswith("Zeile mit Text")


def test_parsing_a_20_mb_message_needs_little_memory_and_time() -> None:
    raw = with_attachment(os.urandom(15 * 1024 * 1024))
    started = time.perf_counter()
    tracemalloc.start()
    try:
        parsed = parse_message(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.attachments[0].size == 15 * 1024 * 1024
    assert peak < len(raw) // 4, peak
    assert time.perf_counter() - started < 5


def test_a_multipart_without_its_close_delimiter_keeps_its_last_part() -> None:
    raw = with_attachment(os.urandom(50_000))
    raw = raw[:raw.rindex(b"--")]  # cut the close delimiter off
    assert parse_message(raw).attachments[0].filename == "Angebot.pdf"


@pytest.mark.parametrize("encoded", [False, True])
def test_a_nested_message_is_slimmed_too(encoded: bool) -> None:
    inner = with_attachment(os.urandom(60_000))
    outer = EmailMessage()
    outer["From"] = "alice@xyz.de"
    outer.set_content("Weitergeleitet")
    if encoded:  # some clients base64 an attached message (RFC 2046 forbids it)
        outer.add_attachment(inner, maintype="message", subtype="rfc822")
    else:
        outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    raw = outer.as_bytes(policy=outer.policy.clone(linesep="\r\n"))
    built = tree(raw)
    attached = built.message.get_payload()[1]
    leaves = [attached] if encoded else attached.get_payload()[0].get_payload()
    assert all(len(str(leaf.get_payload())) < 100 for leaf in leaves)
    [listed] = parse_message(raw).attachments
    assert listed.content_type == "message/rfc822" and listed.size > 60_000


@pytest.mark.parametrize("field, message", [
    (b"Content-Type: text/plain" + b";" * 201, "more than 200 parameters"),
    (b"Content-Type: text/plain; name=" + b"x" * 17_000, "longer than 16384 bytes"),
    (b"Content-Disposition: attachment; a=" + b"(" * 20 + b")" * 20, "nests comments"),
])
def test_mime_fields_the_parser_would_choke_on_are_refused_fast(field: bytes,
                                                              message: str) -> None:
    raw = (b"From: alice@xyz.de\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
           + field + b"\r\n\r\nbody\r\n--x--\r\n")
    started = time.perf_counter()
    with pytest.raises(MessageMalformed, match=message):
        parse_message(raw)
    assert time.perf_counter() - started < 0.5


def test_a_quoted_file_name_with_parentheses_is_fine() -> None:
    raw = with_attachment(b"x").replace(b'filename="Angebot.pdf"',
                                        b'filename="Angebot (1) ((2)).pdf"')
    assert parse_message(raw).attachments[0].filename == "Angebot (1) ((2)).pdf"


def test_bad_base64_still_gets_a_size_and_no_exception() -> None:
    body = base64.encodebytes(os.urandom(9000)).replace(b"A", b"!")
    raw = with_attachment(b"x").replace(base64.encodebytes(b"x").rstrip(), body.rstrip())
    assert parse_message(raw).attachments[0].size > 0


def test_a_nested_multipart_that_reuses_its_parents_boundary_is_read_one_way() -> None:
    # The standard library and a pre-check once read this differently: what the check had
    # not seen (a content type with a NUL) reached the database unchecked.
    nested = (b"--nul\r\nContent-Type: multipart/mixed; boundary=\"nul\"\r\n\r\n" * 30
              + b"--nul\r\nContent-Type: application/p\x00df; name=a.pdf\r\n\r\nabc\r\n--nul--\r\n")
    raw = (b"From: alice@xyz.de\r\nContent-Type: multipart/mixed; boundary=\"nul\"\r\n\r\n"
           + nested)
    parsed = parse_message(raw)
    assert all("\x00" not in a.content_type for a in parsed.attachments)
    assert "application/pdf" in [a.content_type for a in parsed.attachments]


def test_a_delivery_status_part_is_not_read_as_header_blocks() -> None:
    report = (b"From: MAILER-DAEMON@xyz.de\r\nContent-Type: multipart/report; "
              b"report-type=delivery-status; boundary=r\r\n\r\n--r\r\n"
              b"Content-Type: text/plain\r\n\r\nNicht zustellbar.\r\n--r\r\n"
              b"Content-Type: message/delivery-status\r\n\r\n"
              + b"\r\n".join(b"Reporting-MTA: dns; x%d" % i for i in range(5000))
              + b"\r\n--r--\r\n")
    started = time.perf_counter()
    parsed = parse_message(report)
    assert parsed.body == "Nicht zustellbar."
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status"]
    assert time.perf_counter() - started < 0.5


def attaching(inner: bytes, *, boundary: bytes = b"x", cte: bytes = b"7bit") -> bytes:
    return (b"From: alice@xyz.de\r\nContent-Type: multipart/mixed; boundary=" + boundary
            + b"\r\n\r\n--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nWeitergeleitet\r\n"
            b"--" + boundary + b"\r\nContent-Type: message/rfc822\r\n"
            b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + inner
            + b"\r\n--" + boundary + b"--\r\n")


def test_an_attached_message_is_noted_where_its_bytes_lie() -> None:
    inner = b"From: bob@acme.com\r\nSubject: Angebot\r\n\r\nHallo\r\n"
    raw = attaching(inner)
    [attached] = tree(raw).attached
    assert (raw[attached.start:attached.end], attached.encoding) == (inner, "7bit")


def test_only_the_outermost_attached_messages_are_noted() -> None:
    # bob's mail, which attaches carol's, then dave's mail base64-encoded beside it.
    innermost = b"From: carol@acme.com\r\n\r\nx\r\n"
    middle = b"From: bob@acme.com\r\n" + attaching(innermost, boundary=b"y").partition(
        b"\r\n")[2]
    raw = attaching(middle).removesuffix(b"--x--\r\n") + (
        b"--x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"From: dave@acme.com\r\n\r\ny\r\n") + b"--x--\r\n")
    noted = tree(raw).attached
    assert [raw[a.start:a.start + 20] for a in noted] == [b"From: bob@acme.com\r\n",
                                                        b"RnJvbTogZGF2ZUBhY21l"]
    assert [a.encoding for a in noted] == ["7bit", "base64"]


# The delimiter index finds where a declaration or a delimiter line can start with
# bytes.find; what it finds must be exactly what the regexes find over every byte.

def spans(matches: Iterator[re.Match[bytes]]) -> list[tuple[int, int, bytes]]:
    return [(m.start(), m.end(), m.group(0)) for m in matches]


def assert_scans_agree(raw: bytes) -> None:
    assert spans(mime_tree_module._declarations(raw)) == \
        spans(mime_tree_module._DECLARED.finditer(raw))
    assert spans(mime_tree_module._dash_lines(raw)) == \
        spans(mime_tree_module._DASH_LINE.finditer(raw))


@given(st.lists(st.sampled_from([b"boundary", b"BoUnDaRy", b"bound", b"=", b'"', b";", b" ",
                                 b"\r", b"\n", b"\r\n", b"-", b"--", b"x", b"ary=", b"\t",
                                 b"\xc3\xa4", b"B"]), max_size=60))
@settings(max_examples=2000, deadline=None)
def test_the_fast_scans_find_what_the_regexes_find(pieces: list[bytes]) -> None:
    assert_scans_agree(b"".join(pieces))


@pytest.mark.parametrize("raw", [
    b"", b"--", b"--\n", b"-", b"\n--x", b"--a\r\n--a--", b"--a\rb\n", b"x\n--" + b"y" * 211,
    b"boundary=boundary=x;", b'BOUNDARY="q" boundary = "r"', b"boundary", b"boundary=",
    b'boundary="' + b"a" * 201 + b'"',
])
def test_the_fast_scans_agree_at_the_edges(raw: bytes) -> None:
    assert_scans_agree(raw)


@pytest.mark.parametrize("offset", range(-9, 2))
def test_a_declaration_across_the_scan_window_is_found(offset: int) -> None:
    """The word is looked for a window at a time: one that straddles two is found once."""
    window = mime_tree_module._WINDOW
    raw = b"x" * (window + offset) + b'BoundarY="edge"\r\n--edge\r\n--edge--\r\n'
    assert_scans_agree(raw)
    assert list(mime_tree_module._delimiter_index(raw, 10)) == [b"edge"]


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_the_fast_scans_agree_on_the_corpus(path: Path) -> None:
    assert_scans_agree(as_relayed(path.read_bytes()))
