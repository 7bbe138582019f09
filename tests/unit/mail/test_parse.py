"""Reading messages: decoded headers, text as a reader sees it, never an exception."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_mailer.errors import MessageMalformed, MessageRefused
from crm_mailer.mail.parse import DERIVED_ID_DOMAIN, Limits, derive_message_id, parse_message


def msg(headers: bytes, body: bytes = b"Hallo\r\n") -> bytes:
    return headers.replace(b"\n", b"\r\n") + b"\r\n" + body


BASE = b"From: Alice <alice@xyz.de>\nTo: bob@acme.com\nMessage-ID: <abc@xyz.de>\n"


def subject_of(subject_line: bytes) -> str:
    return parse_message(msg(BASE + b"Subject: " + subject_line + b"\n")).subject


def test_q_encoded_utf8_subject_is_decoded() -> None:
    assert subject_of(b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe_Lead_11111?=") == "Grüße Lead 11111"


def test_b_encoded_latin1_subject_is_decoded() -> None:
    assert subject_of(b"=?ISO-8859-1?B?R3L832UgTGVhZCAxMTExMQ==?=") == "Grüße Lead 11111"


def test_adjacent_encoded_words_join_without_the_space_between() -> None:
    assert subject_of(b"=?utf-8?q?Lead_?= =?utf-8?q?11111?= x") == "Lead 11111 x"


def test_raw_utf8_subject_is_read_as_utf8() -> None:
    assert subject_of("Grüße Lead 11111".encode()) == "Grüße Lead 11111"


def test_raw_windows_1252_subject_is_read_as_windows_1252() -> None:
    assert subject_of("Grüße – Lead 11111".encode("cp1252")) == "Grüße – Lead 11111"


def test_encoded_word_with_wrong_charset_falls_back_without_replacement_char() -> None:
    subject = subject_of(b"=?utf-8?q?caf=E9?= Lead 11111")
    assert subject == "café Lead 11111"


def test_encoded_word_with_unknown_charset_still_reads() -> None:
    assert subject_of(b"=?x-unknown?q?B=FCro?= 11111") == "Büro 11111"


def test_folded_subject_is_unfolded() -> None:
    assert subject_of(b"XYZ Lead\n 11111") == "XYZ Lead 11111"


def test_subject_keeps_tokens_apart_across_a_fold_between_encoded_words() -> None:
    assert subject_of(b"=?utf-8?q?Lead?=\n =?utf-8?q?_11111?=").split() == ["Lead", "11111"]


def test_addresses_are_normalized_and_idna_encoded() -> None:
    parsed = parse_message(msg(
        "From: =?utf-8?q?J=C3=BCrgen?= <Juergen@Müller.Example>\n"
        "To: Bob <BOB@ACME.COM>, undisclosed-recipients:;\nCc: \"Carol, C.\" <carol@acme.com>,"
        " carol@acme.com\nMessage-ID: <x@y>\n".encode()))
    assert parsed.from_address == "juergen@xn--mller-kva.example"
    assert parsed.to == ("bob@acme.com",)
    assert parsed.cc == ("carol@acme.com",)


def test_message_id_is_stored_without_angle_brackets() -> None:
    parsed = parse_message(msg(BASE))
    assert (parsed.message_id, parsed.message_id_derived) == ("abc@xyz.de", False)


def test_missing_message_id_is_derived_stably_ignoring_prepended_trace_headers() -> None:
    raw = msg(b"From: alice@xyz.de\nSubject: Hi\n")
    relayed = b"Received: from a by b;\r\n\tThu, 26 Nov 2026 10:00:00 +0000\r\n" + raw
    first = parse_message(raw)
    assert first.message_id_derived
    assert first.message_id.endswith("@" + DERIVED_ID_DOMAIN)
    assert first.message_id == parse_message(relayed).message_id == derive_message_id(raw)
    assert parse_message(raw + b"other\r\n").message_id != first.message_id


def test_overlong_message_id_is_shortened_stably() -> None:
    raw = msg(b"From: a@xyz.de\nMessage-ID: <" + b"x" * 2000 + b"@y>\n")
    assert len(parse_message(raw).message_id) <= 255
    assert parse_message(raw).message_id == parse_message(raw).message_id


def test_date_with_offset_is_kept_aware() -> None:
    parsed = parse_message(msg(BASE + b"Date: Fri, 20 Nov 2026 09:30:00 +0100\n"))
    assert parsed.sent_at == dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
    assert parsed.sent_at.utcoffset() == dt.timedelta(hours=1)


def test_unreadable_date_is_none() -> None:
    assert parse_message(msg(BASE + b"Date: someday soon\n")).sent_at is None
    assert parse_message(msg(BASE + b"Date: Fri, 20 Nov 2026 09:30:00 -0000\n")).sent_at == \
        dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)


def test_text_plain_is_preferred_over_html() -> None:
    raw = msg(BASE + b'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"\n',
              b"--b\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n"
              b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain version\r\n--b--\r\n")
    assert parse_message(raw).body == "Plain version"


def test_html_only_body_is_text_as_a_reader_sees_it() -> None:
    html = ("<html><head><style>p {color: red}</style><script>alert(1)</script></head><body>"
            "<p>Sehr geehrter Herr <b>Bauer</b>,</p><p>Preis &amp; Leistung&nbsp;stimmen "
            "&euro; &#8364; <i>kursiv</i> <a href='http://x.example/'>Link</a></p>"
            "<ul><li>eins</li><li>zwei</li></ul></body></html>")
    raw = msg(BASE + b"Content-Type: text/html; charset=utf-8\n", html.encode())
    body = parse_message(raw).body
    assert "Sehr geehrter Herr Bauer," in body
    assert "Preis & Leistung\u00a0stimmen € €" in body or "Preis & Leistung stimmen € €" in body
    assert "kursiv" in body and "Link" in body and "eins" in body and "zwei" in body
    for markup in ("<", ">", "&amp;", "**", "_kursiv_", "*kursiv*", "color: red", "alert("):
        assert markup not in body, markup


def test_8bit_body_with_wrong_charset_is_read_as_windows_1252() -> None:
    raw = msg(BASE + b"Content-Type: text/plain; charset=us-ascii\n", "Grüße\r\n".encode("cp1252"))
    assert parse_message(raw).body == "Grüße"


def test_attachments_are_listed_with_name_type_and_size() -> None:
    raw = msg(BASE + b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n',
              b"--b\r\nContent-Type: text/plain\r\n\r\nSiehe Anhang\r\n"
              b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
              b"Content-Disposition: attachment; filename*=UTF-8''Angebot%20M%C3%BCller.pdf\r\n"
              b"\r\nJVBERi0xLjQK\r\n"
              b"--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: fwd\r\n\r\nhi\r\n"
              b"--b--\r\n")
    parsed = parse_message(raw)
    assert parsed.body == "Siehe Anhang"
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments][:1] == [
        ("Angebot Müller.pdf", "application/pdf", 9)]
    assert [a.content_type for a in parsed.attachments] == ["application/pdf", "message/rfc822"]


def test_nul_characters_never_reach_the_text() -> None:
    parsed = parse_message(msg(BASE + b"Subject: a\x00b\n", b"x\x00y\r\n"))
    assert "\x00" not in parsed.subject and "\x00" not in parsed.body


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_parse_without_exception_into_clean_text(raw: bytes) -> None:
    try:
        parsed = parse_message(raw)
    except MessageRefused as refused:  # a limit, named: the one exception allowed
        assert "(max_" in str(refused) or "bare CR or LF" in str(refused)
        return
    for text in (parsed.subject, parsed.body, parsed.message_id):
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogates


header_names = st.sampled_from([b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID",
                                b"Content-Type", b"Content-Transfer-Encoding", b"MIME-Version"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(header_names, st.binary(max_size=200)), max_size=10),
       st.binary(max_size=500))
def test_hostile_headers_parse_without_exception(headers: list[tuple[bytes, bytes]],
                                                 body: bytes) -> None:
    raw = b"".join(name + b": " + value.replace(b"\n", b" ") + b"\r\n"
                   for name, value in headers) + b"\r\n" + body
    try:
        parsed = parse_message(raw)
    except MessageRefused as refused:
        assert "(max_" in str(refused) or "bare CR or LF" in str(refused)
        return
    parsed.subject.encode("utf-8")
    parsed.body.encode("utf-8")
    assert all("@" in a and a.isprintable() for a in (*parsed.to, *parsed.cc))


def nested_multipart(depth: int) -> bytes:
    opening = [b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i)
               for i in range(1, depth)]
    closing = [b"--b%d--\r\n" % i for i in reversed(range(depth))]
    return (b"From: alice@xyz.de\r\nSubject: deep Lead 11111\r\n"
            b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + b"".join(opening)
            + b"--b%d\r\nContent-Type: text/plain\r\n\r\nhello\r\n" % (depth - 1)
            + b"".join(closing))


def test_ordinary_nesting_is_read_as_mime() -> None:
    parsed = parse_message(nested_multipart(30))
    assert parsed.body == "hello" and parsed.defects == ()


def test_hostile_mime_nesting_is_refused_naming_the_limit_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(MessageMalformed, match=r"deeper than 50 levels \(max_mime_depth\)"):
        parse_message(nested_multipart(20_000))
    assert time.perf_counter() - started < 2


def test_nesting_just_past_the_configured_depth_is_refused() -> None:
    parse_message(nested_multipart(9), Limits(max_mime_depth=9))
    with pytest.raises(MessageMalformed, match="max_mime_depth"):
        parse_message(nested_multipart(10), Limits(max_mime_depth=9))


def test_boundary_words_in_a_text_part_do_not_count_as_nesting() -> None:
    text = b"".join(b"boundary=q%d\r\n" % i for i in range(200))
    raw = (b"From: alice@xyz.de\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
           b"--x\r\nContent-Type: text/plain\r\n\r\n" + text + b"--x--\r\n")
    assert parse_message(raw).body.startswith("boundary=q0")


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--x\r\nContent-Type: application/octet-stream\r\nContent-Disposition: "
                     b"attachment; filename=f%d.bin\r\n\r\nabc\r\n" % i for i in range(count))
    return (b"From: alice@xyz.de\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
            b"--x\r\nContent-Type: text/plain\r\n\r\nSiehe Anhang\r\n" + parts + b"--x--\r\n")


def test_a_message_within_the_part_limit_lists_every_attachment() -> None:
    parsed = parse_message(many_parts(998))  # + the container and the text part
    assert parsed.body == "Siehe Anhang"
    assert len(parsed.attachments) == 998
    assert parsed.attachments[997].filename == "f997.bin"


def test_a_message_with_thousands_of_parts_is_refused_naming_the_limit() -> None:
    with pytest.raises(MessageMalformed, match=r"more than 1000 MIME parts \(max_mime_parts\)"):
        parse_message(many_parts(5000))
