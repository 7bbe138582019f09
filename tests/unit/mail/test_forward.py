"""The original a forward carries: each client's block, an attached message, nothing for a reply."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_mailer.mail.forward import (
    SCAN_CHARS,
    ForwardedOriginal,
    Source,
    forwarded_original,
    written_date,
)
from crm_mailer.mail.parse import parse_message

FORWARDS = Path(__file__).resolve().parents[3] / "fixtures" / "eml" / "conversation" / "forward"
CET = dt.timezone(dt.timedelta(hours=1))
JUERGEN = "jürgen@xn--mller-shne-kcb9d.example"  # jürgen@müller-söhne.example, as stored


def original(from_address: str | None, from_name: str | None, subject: str,
             sent_at: dt.datetime | None, source: Source, *,
             to: tuple[str, ...] = ("alice@xyz.de",),
             cc: tuple[str, ...] = (), message_id: str | None = None,
             further_originals: int = 0) -> ForwardedOriginal:
    return ForwardedOriginal(from_address=from_address, from_name=from_name, to=to, cc=cc,
                             subject=subject, sent_at=sent_at, message_id=message_id,
                             source=source, further_originals=further_originals)


EXPECTED: dict[str, ForwardedOriginal | None] = {
    "outlook365_de.eml": original(
        "bob@acme.com", "Bob Bauer", "Angebot Website-Relaunch",
        dt.datetime(2026, 3, 16, 17, 22), "inline:outlook", cc=("carol@acme.com",)),
    "new_outlook_en_html_only.eml": original(
        "hank@globex.co.uk", "Hank Scorpio", "UK expansion - pilot approved",
        dt.datetime(2026, 3, 12, 16, 2), "inline:outlook"),
    "outlook2010_en_plain.eml": original(
        "hank@globex.co.uk", "Hank Scorpio", "UK expansion - warehouse figures",
        dt.datetime(2026, 3, 12, 16, 2), "inline:outlook", to=(),
        cc=("logistics@globex.co.uk",)),
    "outlook2016_de_plain.eml": original(
        JUERGEN, "Müller, Jürgen", "Verlängerung Wartungsvertrag",
        dt.datetime(2026, 3, 4, 8, 47), "inline:outlook"),
    "outlook365_de_forward_of_forward.eml": original(
        "tom@xyz.de", "Tom Techniker", "WG: Angebot Website-Relaunch",
        dt.datetime(2026, 3, 16, 18, 5), "inline:outlook"),
    "outlook_de_block_in_html_table.eml": original(
        "carol@acme.com", "Carol Clausen", "Schulungstermine",
        dt.datetime(2026, 3, 10, 9, 12), "inline:outlook"),
    "outlook365_de_reply.eml": None,
    "thunderbird_de.eml": original(
        "bob@acme.com", "Bob Bauer", "Re: Angebot Website-Relaunch",
        dt.datetime(2026, 3, 16, 17, 22, 3, tzinfo=CET), "inline:thunderbird",
        cc=("carol@acme.com",)),
    "thunderbird_en_html_only.eml": original(
        "hank@globex.co.uk", "Hank Scorpio", "Quote for the UK warehouse – 3 sites",
        dt.datetime(2026, 3, 10, 14, 5, 19, tzinfo=dt.UTC), "inline:thunderbird",
        to=("sales@xyz.de",)),
    "thunderbird52_original_message.eml": original(
        "carol@acme.com", "Carol Clausen", "Warranty question",
        dt.datetime(2026, 3, 2, 16, 10, 44, tzinfo=CET), "inline:thunderbird"),
    "thunderbird_rfc822_attachment.eml": original(
        "bob@acme.com", "Bob Bauer", "Angebot Website-Relaunch – Rückfragen",
        dt.datetime(2026, 3, 16, 16, 22, 3, tzinfo=dt.UTC), "attachment",
        cc=("carol@acme.com",),
        message_id="AS8PR03MB6918C7D8E9F0A1B2C3D4E5F6A7B8C@"
                   "AS8PR03MB6918.eurprd03.prod.exchangelabs.com"),
    "gmail_en.eml": original(
        "sabine.schmidt@mueller-gmail.example", "Sabine Schmidt - Einkauf Müller & Söhne KG",
        "Order: 2 extra licences", dt.datetime(2026, 3, 4, 15, 18), "inline:gmail",
        cc=(JUERGEN,)),
    "gmail_de_base64.eml": original(
        JUERGEN, "Jürgen Müller", "Verlängerung Wartungsvertrag – Rückfrage",
        dt.datetime(2026, 3, 4, 8, 47), "inline:gmail"),
    "gmail_two_attached_messages.eml": original(
        "hank@globex.co.uk", "Hank Scorpio", "UK expansion - next steps",
        dt.datetime(2026, 3, 10, 14, 5, 19, tzinfo=dt.UTC), "attachment",
        message_id="001b01dcb08a$3c4d5e60$b4e81b20$@globex.co.uk", further_originals=1),
    "gmail_de_reply_quoting_forward.eml": None,
    "gmail_en_no_from_line.eml": original(
        None, None, "Warranty question", dt.datetime(2026, 3, 2, 16, 10), "inline:gmail"),
    "apple_mail_en.eml": original(
        "bob@acme.com", "Bob Bauer", "Meeting notes 16 March",
        dt.datetime(2026, 3, 16, 17, 22, 3, tzinfo=CET), "inline:apple-mail",
        cc=("carol@acme.com",)),
    "apple_mail_de_iphone.eml": original(
        "bob@acme.com", None, "Rückfrage zum Angebot",
        dt.datetime(2026, 3, 16, 17, 22, 3, tzinfo=CET), "inline:apple-mail"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_client_fixture_gives_exactly_its_original(name: str) -> None:
    assert parse_message((FORWARDS / name).read_bytes()).forwarded == EXPECTED[name]


def test_every_forward_fixture_is_pinned_and_described() -> None:
    names = sorted(path.name for path in FORWARDS.glob("*.eml"))
    assert names == sorted(EXPECTED)
    readme = (FORWARDS / "README.md").read_text("utf-8")
    assert [name for name in names if f"`{name}`" not in readme] == []


def test_the_same_forward_with_unix_line_ends_reads_the_same() -> None:
    raw = (FORWARDS / "outlook2016_de_plain.eml").read_bytes().replace(b"\r\n", b"\n")
    assert parse_message(raw).forwarded == EXPECTED["outlook2016_de_plain.eml"]


# --- what counts as a forward -------------------------------------------------------------

OUTLOOK_BLOCK = ("Von: Bob Bauer <bob@acme.com>\nGesendet: Montag, 16. März 2026 17:22\n"
                 "An: Alice Albrecht <alice@xyz.de>\nBetreff: Angebot\n\nHallo\n")


def sender(subject: str, body: str) -> str | None:
    found = forwarded_original(subject, body)
    return found.from_address if found is not None else None


@pytest.mark.parametrize("subject", ["WG: Angebot", "FW: Angebot", "Fwd: Angebot",
                                     "[EXT] WG: Angebot", "Fw[2]: Angebot", "WG: AW: Angebot"])
def test_outlooks_block_under_a_forwards_subject_is_a_forward(subject: str) -> None:
    assert sender(subject, "Zur Ablage\n\n" + OUTLOOK_BLOCK) == "bob@acme.com"


@pytest.mark.parametrize("subject", ["AW: Angebot", "RE: Angebot", "Angebot", "AW: WG: Angebot",
                                     ""])
def test_outlooks_block_under_any_other_subject_is_a_reply(subject: str) -> None:
    assert forwarded_original(subject, "Danke!\n\n" + OUTLOOK_BLOCK) is None
    assert forwarded_original(subject, "-----Ursprüngliche Nachricht-----\n"
                              + OUTLOOK_BLOCK) is None


def test_a_forward_line_settles_it_whatever_the_subject() -> None:
    body = "---------- Forwarded message ---------\nFrom: Bob <bob@acme.com>\nSubject: x\n"
    assert sender("AW: something else", body) == "bob@acme.com"


@pytest.mark.parametrize("attribution", [
    "On Mon, Mar 16, 2026 at 5:22 PM Bob Bauer <bob@acme.com> wrote:",
    "On Mon, Mar 16, 2026 at 5:22 PM Bob Bauer <bob@acme.com>\nwrote:",
    "Am 16.03.2026 um 17:22 schrieb Bob Bauer <bob@acme.com>:",
    "Am Mo., 16. März 2026 um 17:22 Uhr schrieb Bob Bauer <\nbob@acme.com>:",
    "> quoted text of the mail answered",
])
def test_a_reply_that_quotes_a_forward_has_no_original(attribution: str) -> None:
    body = (f"Danke.\n\n{attribution}\n\n> ---------- Forwarded message ---------\n"
            "> From: Carol <carol@acme.com>\n> Subject: x\n")
    assert forwarded_original("Fwd: x", body) is None


def test_a_quoted_forward_line_and_quoted_fields_still_count() -> None:
    body = ("FYI\n\n> -----Original Message-----\n> From: Bob Bauer [mailto:bob@acme.com]\n"
            "> Sent: Monday, March 16, 2026 5:22 PM\n> To: Alice\n> Subject: Offer\n>\n> Hi\n")
    assert forwarded_original("FW: Offer", body) == original(
        "bob@acme.com", "Bob Bauer", "Offer", dt.datetime(2026, 3, 16, 17, 22),
        "inline:outlook", to=())


def test_only_the_first_block_counts() -> None:
    body = ("---------- Forwarded message ---------\nFrom: Tom <tom@xyz.de>\nSubject: Fwd: x\n\n"
            "---------- Forwarded message ---------\nFrom: Bob <bob@acme.com>\nSubject: x\n")
    assert sender("Fwd: Fwd: x", body) == "tom@xyz.de"


def test_a_forward_line_without_fields_is_text() -> None:
    assert forwarded_original("Fwd: x", "---------- Forwarded message ---------\n\nHallo\n\n"
                              "Gruß") is None


def test_a_block_past_the_scanned_start_is_not_read() -> None:
    body = "x\n" * (SCAN_CHARS // 2) + OUTLOOK_BLOCK
    assert forwarded_original("WG: Angebot", body) is None
    assert sender("WG: Angebot", "x\n" * (SCAN_CHARS // 2 - 100) + OUTLOOK_BLOCK) == \
        "bob@acme.com"


def test_outlooks_block_on_one_line_is_split_at_its_labels() -> None:
    # An HTML table row holding every field in its own cell renders as one line.
    html = ("<table><tr><td>Von: Bob Bauer &lt;bob@acme.com&gt;</td><td>Gesendet: Montag, 16. "
            "März 2026 17:22</td><td>An: Alice &lt;alice@xyz.de&gt;</td><td>Betreff: Termin An: "
            "alle</td></tr></table><p>Hallo</p>")
    raw = ("From: alice@xyz.de\r\nSubject: WG: Termin\r\nContent-Type: text/html; charset=utf-8"
           "\r\n\r\n" + html).encode()
    assert parse_message(raw).forwarded == original(
        "bob@acme.com", "Bob Bauer", "Termin An: alle", dt.datetime(2026, 3, 16, 17, 22),
        "inline:outlook")


def test_no_break_spaces_and_zero_width_marks_around_labels_are_blanks() -> None:
    body = ("Zur Ablage\n\u00a0Von:\u00a0Bob Bauer\u200b <bob@acme.com>\n"
            "\u00a0Gesendet:\u00a0Montag, 16. März 2026 17:22\n\u00a0Betreff:\u00a0Angebot\n")
    assert forwarded_original("WG: Angebot", body) == original(
        "bob@acme.com", "Bob Bauer", "Angebot", dt.datetime(2026, 3, 16, 17, 22),
        "inline:outlook", to=())


# --- how a sender is written --------------------------------------------------------------

@pytest.mark.parametrize("written, address, name", [
    ("Bob Bauer <bob@acme.com>", "bob@acme.com", "Bob Bauer"),
    ("Bob Bauer [mailto:Bob@ACME.com]", "bob@acme.com", "Bob Bauer"),
    ('"bob@acme.com" <bob@acme.com>', "bob@acme.com", None),
    ('"Bauer, Bob" <Bob@Acme.COM>', "bob@acme.com", "Bauer, Bob"),
    ("Bauer, Bob <bob@acme.com>", "bob@acme.com", "Bauer, Bob"),
    ("'Bob Bauer' <mailto:bob@acme.com>", "bob@acme.com", "Bob Bauer"),
    ("*Bob Bauer* <bob@acme.com>", "bob@acme.com", "Bob Bauer"),
    ("bob@acme.com", "bob@acme.com", None),
    ("Bob Bauer <\nbob@acme.com>", "bob@acme.com", "Bob Bauer"),
    ("Bob Bauer\n<bob@acme.com>", "bob@acme.com", "Bob Bauer"),
    ("Bob Bauer [\nmailto:bob@acme.com]", "bob@acme.com", "Bob Bauer"),
    ("Jürgen <jürgen@Müller-Söhne.example>", JUERGEN, "Jürgen"),
    ("Bauer, Bob", None, "Bauer, Bob"),
    ("Bob <not an address>", None, "Bob"),
])
def test_each_way_of_writing_the_sender_gives_its_address(written: str, address: str | None,
                                                          name: str | None) -> None:
    found = forwarded_original("Fwd: x", f"-------- Forwarded Message --------\nSubject: x\n"
                               f"From: {written}\nTo: alice@xyz.de\n\nHallo")
    assert found is not None
    assert (found.from_address, found.from_name, found.subject, found.to) == \
        (address, name, "x", ("alice@xyz.de",))


def test_recipients_are_every_address_written_and_names_alone_are_passed_over() -> None:
    found = forwarded_original("WG: x", "-----Original Message-----\nFrom: bob@acme.com\n"
                               "Sent: Monday, March 16, 2026 5:22 PM\nTo: Alice Albrecht; "
                               "'Carol' <Carol@acme.com>; Dave [mailto:dave@acme.com];\n"
                               "  eve@acme.com\nCc: Bauer, Bob <bob@acme.com>, Tom\n"
                               "Subject: x\n")
    assert found is not None
    assert (found.to, found.cc) == (("carol@acme.com", "dave@acme.com", "eve@acme.com"),
                                    ("bob@acme.com",))


@pytest.mark.parametrize("written, expected", [
    ("Montag, 16. März 2026 17:22", dt.datetime(2026, 3, 16, 17, 22)),
    ("Monday, March 16, 2026 5:22 PM", dt.datetime(2026, 3, 16, 17, 22)),
    ("Mon, Mar 16, 2026 at 5:22\u202fPM", dt.datetime(2026, 3, 16, 17, 22)),
    ("Mon, Mar 16, 2026 at 12:05 AM", dt.datetime(2026, 3, 16, 0, 5)),
    ("Mo., 16. März 2026 um 17:22 Uhr", dt.datetime(2026, 3, 16, 17, 22)),
    ("16 March 2026 at 17:22:03 CET", dt.datetime(2026, 3, 16, 17, 22, 3, tzinfo=CET)),
    ("16. März 2026 um 17:22:03 MESZ",
     dt.datetime(2026, 3, 16, 17, 22, 3, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("March 16, 2026 at 9:22:03 AM GMT-7",
     dt.datetime(2026, 3, 16, 9, 22, 3, tzinfo=dt.timezone(dt.timedelta(hours=-7)))),
    ("Mon, 16 Mar 2026 17:22:03 +0100", dt.datetime(2026, 3, 16, 17, 22, 3, tzinfo=CET)),
    ("16.03.26 17:22", dt.datetime(2026, 3, 16, 17, 22)),
    ("2026-03-16 17:22", dt.datetime(2026, 3, 16, 17, 22)),
    ("Montag, 31. Februar 2026 17:22", None),
    ("letzten Montag", None),
    ("16. März 2026", None),
])
def test_dates_as_clients_write_them(written: str, expected: dt.datetime | None) -> None:
    assert written_date(written) == expected


# --- an attached message ------------------------------------------------------------------

def forward_attaching(*parts: bytes, content_type: bytes = b"multipart/mixed",
                      note: bytes = b"Siehe Anhang") -> bytes:
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts)
    return (b"From: alice@xyz.de\r\nTo: crm@xyz.hq.example\r\nSubject: Fwd: Angebot\r\n"
            b"Content-Type: " + content_type + b"; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain\r\n\r\n" + note + b"\r\n" + body + b"--b--\r\n")


BOB = (b"From: =?utf-8?q?Bob_B=C3=A4uerle?= <Bob@Acme.com>\r\nTo: alice@xyz.de\r\n"
       b"Subject: =?utf-8?q?R=C3=BCckfrage?=\r\nDate: Mon, 16 Mar 2026 17:22:03 +0100\r\n"
       b"Message-ID: <r1@acme.com>\r\n\r\nHallo\r\n")
BOB_ORIGINAL = original("bob@acme.com", "Bob Bäuerle", "Rückfrage",
                        dt.datetime(2026, 3, 16, 17, 22, 3, tzinfo=CET), "attachment",
                        message_id="r1@acme.com")


@pytest.mark.parametrize("encoding, payload", [
    (b"7bit", BOB),
    (b"base64", base64.encodebytes(BOB)),  # RFC 2046 forbids it; some mailers do it
    (b"quoted-printable", BOB.replace(b"=", b"=3D")),
])
def test_an_attached_message_is_read_whatever_its_transfer_encoding(encoding: bytes,
                                                                    payload: bytes) -> None:
    raw = forward_attaching(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
                            + encoding + b"\r\n\r\n" + payload)
    assert parse_message(raw).forwarded == BOB_ORIGINAL


def test_an_attached_message_after_an_mbox_from_line_is_read() -> None:
    raw = forward_attaching(b"Content-Type: message/rfc822\r\n\r\n"
                            b"From bob@acme.com Mon Mar 16 17:22:03 2026\r\n" + BOB)
    assert parse_message(raw).forwarded == BOB_ORIGINAL


def test_an_unreadable_attached_message_gives_no_original() -> None:
    raw = forward_attaching(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
                            b"base64\r\n\r\n!!!! not base64 at all !!!!")
    assert parse_message(raw).forwarded is None


def test_an_inline_block_wins_over_an_attached_message() -> None:
    # Forwarded inline, the original keeps its own attachments, an attached mail among them.
    raw = forward_attaching(b"Content-Type: message/rfc822\r\n\r\n" + BOB,
                            note=b"---------- Forwarded message ---------\r\n"
                                 b"From: Carol <carol@acme.com>\r\nSubject: x\r\n")
    assert parse_message(raw).forwarded == original("carol@acme.com", "Carol", "x", None,
                                                    "inline:gmail", to=())


def test_a_reply_carrying_an_attached_message_has_no_original() -> None:
    raw = forward_attaching(b"Content-Type: message/rfc822\r\n\r\n" + BOB,
                            note=b"Danke!\r\n\r\nAm 16.03.2026 um 17:22 schrieb Bob:\r\n> Hi")
    assert parse_message(raw).forwarded is None


def test_a_bounce_returns_a_message_but_forwards_none() -> None:
    raw = forward_attaching(b"Content-Type: message/delivery-status\r\n\r\n"
                            b"Reporting-MTA: dns; mx.acme.com\r\n",
                            b"Content-Type: message/rfc822\r\n\r\n" + BOB,
                            content_type=b"multipart/report; report-type=delivery-status")
    assert parse_message(raw).forwarded is None


# --- hostile input ------------------------------------------------------------------------
# Time is this thread's CPU time: the work done, which a busy machine does not stretch.

def test_five_mb_of_von_lines_is_no_forward_and_read_fast() -> None:
    raw = (b"From: alice@xyz.de\r\nSubject: WG: x\r\nContent-Type: text/plain; charset=utf-8"
           b"\r\n\r\n" + b"Von: \r\n" * (5 * 1024 * 1024 // 7))
    started = time.thread_time()
    assert parse_message(raw).forwarded is None
    assert forwarded_original("WG: x", "Von: \n" * (5 * 1024 * 1024 // 6)) is None
    assert time.thread_time() - started < 2


@pytest.mark.parametrize("body", [
    "Von: x\n" * 800_000,
    "Von: x\nGesendet: y\n" * 400_000,
    ">" * 5_000_000,
    "> \n" * 2_000_000,
    "-" * 5_000_000,
    "-----Original Message-----\n" * 200_000,
    "Begin forwarded message:\n" * 200_000,
    "On Monday\n" * 500_000,
    "Am " + "x" * 5_000_000,
    "---------- Forwarded message ---------\nFrom: " + "<" * 5_000_000,
    "---------- Forwarded message ---------\nFrom: " + "a@" * 2_500_000,
    "---------- Forwarded message ---------\nFrom: x <\n" + "y\n" * 2_000_000,
    "-------- Forwarded Message --------\nDate: " + "1" * 5_000_000,
    "Von: a <b@c> Gesendet: An: Cc: Betreff:" * 100_000,
])
def test_hostile_bodies_are_read_in_linear_time_without_error(body: str) -> None:
    started = time.thread_time()
    forwarded_original("WG: x", body)
    assert time.thread_time() - started < 0.5


def nested_forwards(depth: int) -> bytes:
    """A forward attaching a forward attaching ... `depth` messages deep."""
    message = b"From: sender%d@acme.com\r\nSubject: level %d\r\n\r\nthe innermost text\r\n" % (
        depth, depth)
    for level in reversed(range(1, depth)):
        message = (b"From: sender%d@acme.com\r\nSubject: level %d\r\n"
                   b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n"
                   b"--b%d\r\nContent-Type: text/plain\r\n\r\nsiehe Anhang\r\n"
                   b"--b%d\r\nContent-Type: message/rfc822\r\n\r\n" % (level, level, level,
                                                                        level, level)
                   + message + b"\r\n--b%d--\r\n" % level)
    return message


def test_nested_attached_messages_twenty_deep_give_the_outermost_fast() -> None:
    started = time.thread_time()
    found = parse_message(nested_forwards(21)).forwarded
    assert found is not None
    assert (found.from_address, found.subject, found.further_originals) == \
        ("sender2@acme.com", "level 2", 0)
    assert time.thread_time() - started < 1


def test_attached_messages_nested_twenty_deep_are_not_descended_into() -> None:
    # The outermost attached message has no field but its Content-Type; the sender twenty
    # levels down is not looked for.
    inner = b"From: carol@acme.com\r\nSubject: deep\r\n\r\ntext\r\n"
    for _ in range(20):
        inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    assert parse_message(forward_attaching(inner)).forwarded is None


LINES = st.sampled_from([
    "-----Original Message-----", "-----Ursprüngliche Nachricht-----", "---------- Forwarded "
    "message ---------", "-------- Weitergeleitete Nachricht --------", "Begin forwarded message:",
    "Von: Bob Bauer <bob@acme.com>", "From: Bob [mailto:bob@acme.com]", "From: <", "Von:",
    "Gesendet: Montag, 16. März 2026 17:22", "Sent: 99:99 PM", "Date: 31.02.2026 25:61",
    "An: a@b; c", "Cc: <<<>>>", "Betreff: x", "Subject:", "> ", ">>> From: x@y", "", " ",
    "On Mon wrote:", "Am 1.1. schrieb x:", "Hallo", "<bob@acme.com>", "[mailto:", "\u00a0",
])


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60), st.lists(st.one_of(LINES, st.text(max_size=40)), max_size=30))
def test_any_mix_of_block_lines_gives_an_original_or_none_never_an_error(
        subject: str, lines: list[str]) -> None:
    found = forwarded_original(subject, "\n".join(lines))
    if found is not None:
        assert found.from_address is None or "@" in found.from_address
        assert all("@" in address for address in (*found.to, *found.cc))
        assert found.source.startswith("inline:")


def test_a_stored_original_reads_back_the_same() -> None:
    raw = (Path(__file__).resolve().parents[3] / "fixtures" / "eml" / "conversation"
           / "forward" / "thunderbird_rfc822_attachment.eml").read_bytes()
    original = parse_message(raw).forwarded
    assert original is not None
    stored = json.loads(json.dumps(original.as_json()))
    assert ForwardedOriginal.from_json(stored) == original
