"""Machine mail: auto-replies, delivery reports and list traffic, each with its evidence."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crm_mailer.mail.header_block import HeaderBlock
from crm_mailer.mail.machine import RULES, MachineMail, MachineReason, machine_mail
from crm_mailer.mail.parse import header_block, parse_message

CONVERSATION = Path(__file__).resolve().parents[3] / "fixtures" / "eml" / "conversation"
MACHINE = CONVERSATION / "machine"
AUTO, REPORT, LIST = (MachineReason.AUTO_REPLY, MachineReason.DELIVERY_REPORT,
                      MachineReason.MAILING_LIST)

FIXTURES = {
    "outlook_ooo_de.eml": MachineMail(AUTO, "Auto-Submitted", "auto-generated"),
    "outlook_ooo_en.eml": MachineMail(AUTO, "Auto-Submitted", "auto-generated"),
    "gmail_vacation.eml": MachineMail(AUTO, "Auto-Submitted", "auto-replied"),
    "postfix_bounce.eml": MachineMail(
        REPORT, "Content-Type", 'multipart/report; report-type=delivery-status; '
                                'boundary="4F1A2B3C4D.1773914400/mail.acme.com"'),
    "exchange_ndr.eml": MachineMail(
        REPORT, "Content-Type", 'multipart/report; report-type=delivery-status; '
                                'boundary="b1e8c7a2-5d3f-4e6a-9c0b-2f7d8e1a4c63"'),
    "read_receipt.eml": MachineMail(
        REPORT, "Content-Type", 'multipart/report; report-type=disposition-notification; '
                                'boundary="----=_NextPart_000_000D_01DCB2D2.03771AE0"'),
    "mailman_list_post.eml": MachineMail(
        LIST, "List-Id", "Partner-News <partner-news.lists.acme.com>"),
    "mailman_list_announcement.eml": MachineMail(
        LIST, "List-Id", "Partner-News <partner-news.lists.acme.com>"),
}


def machine(headers: bytes, *, envelope_sender: str | None = None) -> MachineMail | None:
    """What parse_message finds for a message with these header lines (LF-separated)."""
    raw = headers.replace(b"\n", b"\r\n") + b"\r\n\r\nHallo\r\n"
    return parse_message(raw, envelope_sender=envelope_sender).machine


def test_fixtures_cover_every_file() -> None:
    assert sorted(p.name for p in MACHINE.glob("*.eml")) == sorted(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_is_machine_mail_with_its_evidence(name: str) -> None:
    assert parse_message((MACHINE / name).read_bytes()).machine == FIXTURES[name]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_keeps_its_reason_over_smtp_with_the_null_sender(name: str) -> None:
    """Reports and responders send with MAIL FROM:<>; the headers still decide the evidence
    (the null sender is read after the report's Content-Type, before everything else)."""
    found = parse_message((MACHINE / name).read_bytes(), envelope_sender="").machine
    expected = FIXTURES[name]
    if expected.reason is REPORT:
        assert found == expected
    else:
        assert found == MachineMail(REPORT, "MAIL FROM", "<>")


@pytest.mark.parametrize("path", sorted((CONVERSATION / "thread").glob("*.eml")),
                         ids=lambda p: p.name)
def test_a_person_s_reply_is_no_machine_mail(path: Path) -> None:
    assert parse_message(path.read_bytes(), envelope_sender="bob@acme.com").machine is None


# --- Auto-Submitted (RFC 3834) ---------------------------------------------------------

@pytest.mark.parametrize("value", [b"no", b"No", b"NO", b" no ", b"no (a person wrote this)",
                                   b'"no"', b"no; x=y", b"(nested (comment)) no", b""])
def test_auto_submitted_no_is_no_sign(value: bytes) -> None:
    assert machine(b"Auto-Submitted: " + value) is None


@pytest.mark.parametrize("value, shown", [
    (b"auto-replied", "auto-replied"),
    (b"Auto-Generated", "Auto-Generated"),
    (b"auto-notified", "auto-notified"),
    (b'auto-replied; owner-email="bob@acme.com"', 'auto-replied; owner-email="bob@acme.com"'),
    (b"(vacation)\n auto-replied", "(vacation) auto-replied"),
    (b"yes", "yes"),  # "other than no": an unknown keyword counts
])
def test_auto_submitted_other_than_no_is_an_auto_reply(value: bytes, shown: str) -> None:
    assert machine(b"Auto-Submitted: " + value) == MachineMail(AUTO, "Auto-Submitted", shown)


def test_a_second_auto_submitted_field_is_read_too() -> None:
    assert machine(b"Auto-Submitted: no\nAuto-Submitted: auto-replied") == \
        MachineMail(AUTO, "Auto-Submitted", "auto-replied")


# --- X-Autoreply, X-Autorespond, and what is not read ------------------------------------

@pytest.mark.parametrize("header", [b"X-Autoreply", b"X-Autorespond", b"x-autoreply"])
@pytest.mark.parametrize("value", [b"yes", b"vacation", b"True"])
def test_x_autoreply_headers_are_auto_replies(header: bytes, value: bytes) -> None:
    spelled = "X-Autoreply" if header.lower() == b"x-autoreply" else "X-Autorespond"
    assert machine(header + b": " + value) == MachineMail(AUTO, spelled, value.decode())


@pytest.mark.parametrize("line", [b"X-Autoreply: no", b"X-Autorespond: dont",
                                  b"X-Autoreply: false", b"X-Autoreply:"])
def test_x_autoreply_saying_no_is_no_sign(line: bytes) -> None:
    assert machine(line) is None


@pytest.mark.parametrize("lines", [
    b"X-Auto-Response-Suppress: All",
    b"X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply",
    # Zammad's out-of-office signature, without Auto-Submitted: still a person's mail.
    b"X-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: bob@acme.com",
    b"X-Autoresponse: yes",
    b"X-Auto-Response: yes",
])
def test_requests_and_unused_headers_are_no_sign(lines: bytes) -> None:
    assert machine(lines) is None


# --- Exchange ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [b"Mailbox Rules Agent", b"mailbox rules agent",
                                   b"Transport Rule Agent,Mailbox Rules Agent"])
def test_exchange_mailbox_rules_agent_is_an_auto_reply(value: bytes) -> None:
    assert machine(b"X-MS-Exchange-Generated-Message-Source: " + value) == \
        MachineMail(AUTO, "X-MS-Exchange-Generated-Message-Source", value.decode())


@pytest.mark.parametrize("value", [b"Transport Rule Agent", b"Journal Agent",
                                   b"DC Pre Content Filter Agent", b""])
def test_other_exchange_agents_are_left_to_auto_submitted(value: bytes) -> None:
    assert machine(b"X-MS-Exchange-Generated-Message-Source: " + value) is None


def test_an_exchange_reply_whose_auto_submitted_a_gateway_removed_is_still_caught() -> None:
    raw = (MACHINE / "outlook_ooo_en.eml").read_bytes().replace(
        b"auto-submitted: auto-generated\r\n", b"")
    assert parse_message(raw).machine == \
        MachineMail(AUTO, "X-MS-Exchange-Generated-Message-Source", "Mailbox Rules Agent")


# --- Precedence and lists ---------------------------------------------------------------

@pytest.mark.parametrize("value", [b"auto_reply", b"bulk", b"Bulk", b"junk", b"list",
                                   b"list (from the list server)"])
def test_precedence_of_machines_is_an_auto_reply(value: bytes) -> None:
    assert machine(b"Precedence: " + value) == MachineMail(AUTO, "Precedence", value.decode())


@pytest.mark.parametrize("value", [b"first-class", b"normal", b"urgent", b"bulky", b""])
def test_other_precedence_is_no_sign(value: bytes) -> None:
    assert machine(b"Precedence: " + value) is None


def test_a_list_post_is_list_traffic_even_with_precedence_list() -> None:
    assert machine(b"Precedence: list\nList-Id: <news.lists.acme.com>") == \
        MachineMail(LIST, "List-Id", "<news.lists.acme.com>")


def test_precedence_auto_reply_wins_over_list_id() -> None:
    assert machine(b"List-Id: <news.lists.acme.com>\nPrecedence: auto_reply") == \
        MachineMail(AUTO, "Precedence", "auto_reply")


def test_a_notification_to_a_list_is_an_auto_reply() -> None:
    """GitLab or Redmine: Auto-Submitted and List-Id; Auto-Submitted speaks first."""
    assert machine(b"List-Id: <project.gitlab.acme.com>\nAuto-Submitted: auto-generated\n"
                   b"X-Auto-Response-Suppress: All") == \
        MachineMail(AUTO, "Auto-Submitted", "auto-generated")


def test_an_empty_list_id_is_no_sign() -> None:
    assert machine(b"List-Id: ") is None


# --- delivery reports -------------------------------------------------------------------

@pytest.mark.parametrize("value", [b"multipart/report; report-type=delivery-status",
                                   b"Multipart/Report;\n report-type=disposition-notification",
                                   b"multipart/report"])
def test_multipart_report_is_a_delivery_report(value: bytes) -> None:
    found = machine(b"Content-Type: " + value)
    assert found is not None and (found.reason, found.header) == (REPORT, "Content-Type")


@pytest.mark.parametrize("value", [b"multipart/mixed; boundary=x", b"multipart/reports",
                                   b"text/plain; report-type=delivery-status"])
def test_other_content_types_are_no_report(value: bytes) -> None:
    assert machine(b"Content-Type: " + value) is None


@pytest.mark.parametrize("sender", ["", "<>", " <> "])
def test_the_null_envelope_sender_is_a_delivery_report(sender: str) -> None:
    assert machine(b"From: bob@acme.com", envelope_sender=sender) == \
        MachineMail(REPORT, "MAIL FROM", "<>")


@pytest.mark.parametrize("sender", [None, "bob@acme.com"])
def test_an_unknown_or_ordinary_envelope_sender_is_no_sign(sender: str | None) -> None:
    assert machine(b"From: bob@acme.com", envelope_sender=sender) is None


@pytest.mark.parametrize("from_line, address", [
    (b"From: MAILER-DAEMON@mail.acme.com (Mail Delivery System)", "mailer-daemon@mail.acme.com"),
    (b"From: Mail Delivery Subsystem <Mailer-Daemon@acme.com>", "mailer-daemon@acme.com"),
    (b"From: Microsoft Outlook <PostMaster@acme.onmicrosoft.com>",
     "postmaster@acme.onmicrosoft.com"),
])
def test_mailer_daemon_and_postmaster_senders_are_delivery_reports(
        from_line: bytes, address: str) -> None:
    assert machine(from_line) == MachineMail(REPORT, "From", address)


@pytest.mark.parametrize("from_line", [b"From: postmaster-team@acme.com",
                                       b'From: "MAILER-DAEMON" <bob@acme.com>',
                                       b"From: bob@postmaster.acme.com"])
def test_daemon_names_elsewhere_in_from_are_no_sign(from_line: bytes) -> None:
    assert machine(from_line) is None


def test_a_qmail_bounce_in_plain_text_is_known_by_its_sender() -> None:
    assert machine(b"From: MAILER-DAEMON@mx.acme.com\nAuto-Submitted: auto-replied\n"
                   b"Content-Type: text/plain") == \
        MachineMail(REPORT, "From", "mailer-daemon@mx.acme.com")


def test_rules_run_in_their_declared_order() -> None:
    assert [rule.__name__ for rule in RULES] == [
        "report", "null_envelope_sender", "daemon_sender", "auto_submitted",
        "autoreply_header", "exchange_mailbox_rules", "precedence_auto_reply", "list_id",
        "precedence_bulk"]
    assert all(rule.__doc__ for rule in RULES)


# --- hostile values ---------------------------------------------------------------------

def test_evidence_is_printable_and_bounded() -> None:
    found = machine(b"Auto-Submitted: auto-replied\x00\x07 caf\xe9 " + b"x" * 10_000)
    assert found is not None
    assert found.value.startswith("auto-replied\\x00\\x07 caf\\xe9 xxx")
    assert len(found.value) <= 200 and found.value.isprintable()


def test_a_nul_in_the_keyword_does_not_make_it_no() -> None:
    assert machine(b"Auto-Submitted: n\x00o") == MachineMail(AUTO, "Auto-Submitted", "n\\x00o")


@pytest.mark.parametrize("value", [b"(" * 1_000_000, b"no " + b"(" * 1_000_000,
                                   b"a" * 1_000_000, b"\x00" * 1_000_000])
def test_huge_values_are_read_quickly(value: bytes) -> None:
    names = ("auto-submitted", "x-autoreply", "x-autorespond",
             "x-ms-exchange-generated-message-source", "precedence", "list-id", "content-type")
    block = HeaderBlock(tuple((name, value) for name in names), 0)
    started = time.perf_counter()
    machine_mail(block, from_addresses=("bob@acme.com",), envelope_sender="bob@acme.com")
    assert time.perf_counter() - started < 1.0


def test_machine_mail_reads_the_block_alone() -> None:
    block = header_block(b"Precedence: bulk\r\n\r\n")
    assert machine_mail(block) == MachineMail(AUTO, "Precedence", "bulk")
