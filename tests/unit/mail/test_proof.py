"""Sender proof: alignment on the Public Suffix List, DKIM, Authentication-Results, verdicts.

Offline: an RSA key is made per module, signatures come from dkimpy, and public keys are
published through a dict-backed resolver (or, for system_dns, a DNS server on localhost).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator

import dkim
import dns.message
import dns.rcode
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_mailer.mail.proof import (
    MAX_AUTH_RESULTS,
    MAX_AUTH_RESULTS_LENGTH,
    MAX_DKIM_ATTEMPTS,
    Proof,
    SenderPolicy,
    aligned,
    dkim_aligned_domain,
    dmarc_pass_by,
    envelope_domain,
    prove,
    registrable_domain,
    system_dns,
    verdict,
)

MESSAGE = (
    b"From: Alice <alice@xyz.de>\r\n"
    b"To: Bob <bob@acme.com>\r\n"
    b"Subject: Angebot 11111\r\n"
    b"Message-ID: <1@xyz.de>\r\n"
    b"\r\n"
    b"Hallo Bob,\r\nanbei das Angebot.\r\n"
)


class FakeDns:
    """A dict-backed DnsTxt that records the names it was asked for."""

    def __init__(self, records: dict[bytes, bytes] | None = None) -> None:
        self.records = dict(records or {})
        self.queries: list[bytes] = []

    def __call__(self, name: bytes) -> bytes | None:
        self.queries.append(name)
        return self.records.get(name)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def key_record(key: rsa.RSAPrivateKey) -> bytes:
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def signed(message: bytes, private_pem: bytes, domain: str = "xyz.de", selector: bytes = b"s1",
           **options: object) -> bytes:
    """The message with a DKIM-Signature by `domain` prepended."""
    return dkim.sign(message, selector, domain.encode(), private_pem, **options) + message


def dns_with_key(key_record: bytes, name: bytes = b"s1._domainkey.xyz.de") -> FakeDns:
    return FakeDns({name: key_record})


# --- registrable domain and alignment ----------------------------------------------


@pytest.mark.parametrize(("domain", "registrable"), [
    ("xyz.de", "xyz.de"),
    ("mail.xyz.de", "xyz.de"),
    ("a.b.mail.xyz.de", "xyz.de"),
    ("a.foo.co.uk", "foo.co.uk"),
    ("Mail.XYZ.de.", "xyz.de"),
    ("mail.bücher.de", "xn--bcher-kva.de"),
])
def test_registrable_domain_is_the_organizational_domain(domain: str, registrable: str) -> None:
    assert registrable_domain(domain) == registrable


@pytest.mark.parametrize("suffix", ["com", "de", "co.uk", "github.io"])
def test_public_suffix_is_its_own_registrable_domain(suffix: str) -> None:
    assert registrable_domain(suffix) == suffix


@pytest.mark.parametrize(("domain", "registrable"), [
    ("a.b.example", "b.example"),
    ("a.b.test", "b.test"),
    ("b.example", "b.example"),
    ("example", "example"),
])
def test_unknown_tld_follows_the_default_rule(domain: str, registrable: str) -> None:
    assert registrable_domain(domain) == registrable


def test_private_suffix_entries_separate_their_customers() -> None:
    assert registrable_domain("www.alice.github.io") == "alice.github.io"


@pytest.mark.parametrize("domain", ["", "[192.0.2.1]", "192.0.2.1", "x..de", "-x.de", "a b.de"])
def test_what_is_not_a_host_name_has_no_registrable_domain(domain: str) -> None:
    assert registrable_domain(domain) == ""


@pytest.mark.parametrize(("domain_a", "domain_b"), [
    ("relay.xyz.de", "xyz.de"),
    ("xyz.de", "mail.xyz.de"),
    ("bounce.mail.xyz.de", "crm.xyz.de"),
    ("xyz.de", "XYZ.DE"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("co.uk", "co.uk"),
])
def test_domains_in_one_organization_align(domain_a: str, domain_b: str) -> None:
    assert aligned(domain_a, domain_b)
    assert aligned(domain_b, domain_a)


@pytest.mark.parametrize(("domain_a", "domain_b"), [
    ("evil-xyz.de", "xyz.de"),
    ("xyz.de.evil.com", "xyz.de"),
    ("xyz.com", "xyz.de"),
    ("foo.co.uk", "bar.co.uk"),
    ("co.uk", "foo.co.uk"),
    ("alice.github.io", "mallory.github.io"),
    ("192.0.2.1", "198.51.2.1"),
    ("[192.0.2.1]", "[192.0.2.1]"),
    ("", ""),
])
def test_domains_of_different_owners_do_not_align(domain_a: str, domain_b: str) -> None:
    assert not aligned(domain_a, domain_b)


@pytest.mark.parametrize(("sender", "domain"), [
    ("bounces+77@relay.xyz.de", "relay.xyz.de"),
    ("<Bounces@Relay.XYZ.de>", "relay.xyz.de"),
    ("x@bücher.de", "xn--bcher-kva.de"),
    ("", ""),
    ("<>", ""),
    (None, ""),
    ("postmaster", ""),
])
def test_envelope_domain_is_normalized_and_empty_for_the_null_sender(
        sender: str | None, domain: str) -> None:
    assert envelope_domain(sender) == domain


# --- DKIM ---------------------------------------------------------------------------


def test_valid_signature_aligned_with_from_proves_it(private_pem: bytes, key_record: bytes) -> None:
    resolver = dns_with_key(key_record)
    assert dkim_aligned_domain(signed(MESSAGE, private_pem), "xyz.de", resolver) == "xyz.de"
    assert resolver.queries == [b"s1._domainkey.xyz.de"]


def test_signature_by_a_subdomain_aligns_with_the_parent_from(
        private_pem: bytes, key_record: bytes) -> None:
    raw = signed(MESSAGE, private_pem, domain="mail.xyz.de")
    resolver = dns_with_key(key_record, b"s1._domainkey.mail.xyz.de")
    assert dkim_aligned_domain(raw, "xyz.de", resolver) == "mail.xyz.de"


def test_valid_signature_by_another_domain_does_not_prove_the_from(
        private_pem: bytes, key_record: bytes) -> None:
    raw = signed(MESSAGE, private_pem, domain="lists.example.org")
    resolver = dns_with_key(key_record, b"s1._domainkey.lists.example.org")
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: key_record)  # valid as such
    assert dkim_aligned_domain(raw, "xyz.de", resolver) is None
    assert resolver.queries == []  # not even looked up


def test_aligned_signature_is_found_behind_a_list_signature(
        private_pem: bytes, key_record: bytes) -> None:
    raw = signed(signed(MESSAGE, private_pem), private_pem, domain="lists.example.org")
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) == "xyz.de"


def test_body_changed_after_signing_fails(private_pem: bytes, key_record: bytes) -> None:
    raw = signed(MESSAGE, private_pem).replace(b"das Angebot", b"die Rechnung")
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) is None


def test_from_changed_after_signing_fails(private_pem: bytes, key_record: bytes) -> None:
    raw = signed(MESSAGE, private_pem).replace(b"From: Alice <alice@", b"From: Mallory <ceo@")
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) is None


def test_second_from_added_after_signing_fails(private_pem: bytes, key_record: bytes) -> None:
    raw = b"From: ceo@xyz.de\r\n" + signed(MESSAGE, private_pem)
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) is None


def test_signature_whose_key_is_not_in_dns_fails(private_pem: bytes) -> None:
    resolver = FakeDns()
    assert dkim_aligned_domain(signed(MESSAGE, private_pem), "xyz.de", resolver) is None
    assert resolver.queries == [b"s1._domainkey.xyz.de"]


def test_signature_checked_against_another_key_fails(private_pem: bytes) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    public = other.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
    resolver = dns_with_key(b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))
    assert dkim_aligned_domain(signed(MESSAGE, private_pem), "xyz.de", resolver) is None


@pytest.mark.parametrize("record", [
    b"v=DKIM1; k=rsa; p=",  # revoked
    b"v=DKIM1; k=rsa; p=AAAA",
    b"v=DKIM1; k=rsa; p=!!!",
    b"v=DKIM1; k=ed25519; p=AAAA",
    b"v=DKIM1; k=dsa; p=AAAA",
    b"garbage",
    b"",
])
def test_unusable_key_record_fails(private_pem: bytes, record: bytes) -> None:
    resolver = dns_with_key(record)
    assert dkim_aligned_domain(signed(MESSAGE, private_pem), "xyz.de", resolver) is None


def test_resolver_exception_counts_as_no_signature(private_pem: bytes) -> None:
    def broken(name: bytes) -> bytes | None:
        raise RuntimeError("resolver broke")

    assert dkim_aligned_domain(signed(MESSAGE, private_pem), "xyz.de", broken) is None


@pytest.mark.parametrize("signature", [
    b"garbage",
    b"",
    b"v=1; d=xyz.de; d=xyz.de",
    b"v=1; a=rsa-sha256; d=xyz.de; h=from; bh=AAAA; b=AAAA",  # no s=
    b"v=1; a=rsa-sha256; d=xyz.de; s=s1; h=from; bh=!!!!; b=????",
    b"v=1; a=rsa-md5; d=xyz.de; s=s1; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; c=weird/weird; d=xyz.de; s=s1; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=xyz.de; s=s1; h=from; l=12x; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=xyz.de; s=s1; h=from; t=99999999999; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=xyz.de; s=s1; h=from; x=1; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=xyz.de; s=\xff; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=xyz.de; s=s1; h=from; bh=AAAA; b=AAAA",
])
def test_garbage_signature_header_is_no_signature(signature: bytes, key_record: bytes) -> None:
    raw = b"DKIM-Signature: " + signature + b"\r\n" + MESSAGE
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) is None


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=200).filter(lambda tail: b"\n" not in tail and b"\r" not in tail))
def test_arbitrary_signature_tags_never_raise(tail: bytes) -> None:
    raw = b"DKIM-Signature: v=1; d=xyz.de; s=s1; h=from; " + tail + b"\r\n" + MESSAGE
    assert dkim_aligned_domain(raw, "xyz.de", FakeDns({b"s1._domainkey.xyz.de": tail})) is None


@pytest.mark.parametrize("raw", [b"", b"no headers at all", b"\r\n\r\n", b"\xff\xfe" * 100])
def test_message_that_is_not_mail_has_no_signature(raw: bytes) -> None:
    assert dkim_aligned_domain(raw, "xyz.de", FakeDns()) is None


def test_unsigned_message_is_not_handed_to_dkimpy(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    monkeypatch.setattr(dkim, "DKIM", lambda raw, **options: parsed.append(raw))
    body_line = b"DKIM-Signature: v=1; d=xyz.de; s=s1; h=from; bh=AAAA; b=AAAA\r\n"
    assert dkim_aligned_domain(MESSAGE + body_line, "xyz.de", FakeDns()) is None
    assert parsed == []  # a signature in the body is no signature, and parsing is costly


def test_signature_that_does_not_sign_from_does_not_count(
        private_pem: bytes, key_record: bytes) -> None:
    # dkim.sign refuses to leave From out, so the signature is made with its internals.
    signer = dkim.DKIM(MESSAGE)
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    signer.hasher = hashlib.sha256
    body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(signer.body)).digest())
    fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/simple"), (b"d", b"xyz.de"),
              (b"s", b"s1"), (b"h", b"subject : to"), (b"bh", body_hash), (b"b", b"0" * 60)]
    header = signer.gen_header(fields, (b"subject", b"to"), policy, b"DKIM-Signature",
                               parse_pem_private_key(private_pem))
    raw = b"DKIM-Signature: " + header + MESSAGE
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: key_record)  # dkimpy accepts it
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) is None


def test_signature_with_l_tag_covering_the_whole_body_counts(
        private_pem: bytes, key_record: bytes) -> None:
    raw = signed(MESSAGE, private_pem, length=True)
    assert b"l=" in raw.split(b"\r\n\r\n")[0]
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) == "xyz.de"


def test_signature_with_l_tag_and_text_appended_does_not_count(
        private_pem: bytes, key_record: bytes) -> None:
    raw = signed(MESSAGE, private_pem, length=True) + b"Bitte zahlen Sie an IBAN DE00...\r\n"
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: key_record)  # dkimpy accepts it
    assert dkim_aligned_domain(raw, "xyz.de", dns_with_key(key_record)) is None


def test_signature_with_utf8_domain_is_looked_up_in_a_labels(
        private_pem: bytes, key_record: bytes) -> None:
    message = MESSAGE.replace(b"alice@xyz.de", "alice@bücher.de".encode())
    raw = signed(message, private_pem, domain="bücher.de")
    resolver = dns_with_key(key_record, b"s1._domainkey.xn--bcher-kva.de")
    assert dkim_aligned_domain(raw, "xn--bcher-kva.de", resolver) == "xn--bcher-kva.de"


def test_at_most_five_aligned_signatures_are_verified(private_pem: bytes) -> None:
    raw = MESSAGE
    for selector in range(MAX_DKIM_ATTEMPTS + 2):
        raw = signed(raw, private_pem, selector=b"s%d" % selector)
    resolver = FakeDns()
    assert dkim_aligned_domain(raw, "xyz.de", resolver) is None
    assert len(resolver.queries) == MAX_DKIM_ATTEMPTS == 5


def test_body_length_checks_count_against_the_attempt_limit(
        private_pem: bytes, key_record: bytes) -> None:
    # Checking l= canonicalizes the body, as costly as a verification.
    short = b"DKIM-Signature: v=1; a=rsa-sha256; d=xyz.de; s=x; h=from; l=1; bh=AAAA; b=AAAA\r\n"
    raw = signed(MESSAGE, private_pem)
    resolver = dns_with_key(key_record)
    four, five = short * (MAX_DKIM_ATTEMPTS - 1), short * MAX_DKIM_ATTEMPTS
    assert dkim_aligned_domain(four + raw, "xyz.de", resolver) == "xyz.de"
    assert dkim_aligned_domain(five + raw, "xyz.de", resolver) is None


def test_no_verification_starts_once_the_time_budget_is_spent(
        private_pem: bytes, key_record: bytes) -> None:
    raw = signed(signed(MESSAGE, private_pem, selector=b"good"), private_pem, selector=b"slow")

    class SlowDns(FakeDns):
        def __call__(self, name: bytes) -> bytes | None:
            time.sleep(0.2)
            return super().__call__(name)

    resolver = SlowDns({b"good._domainkey.xyz.de": key_record})
    assert dkim_aligned_domain(raw, "xyz.de", resolver, budget=0.1) is None
    assert resolver.queries == [b"slow._domainkey.xyz.de"]
    assert dkim_aligned_domain(raw, "xyz.de", resolver, budget=5) == "xyz.de"


# --- Authentication-Results ---------------------------------------------------------

TRUSTED = ("mx.xyz.de",)


def test_trusted_dmarc_pass_for_the_from_domain_proves_it() -> None:
    results = ["mx.xyz.de; spf=pass smtp.mailfrom=xyz.de; dmarc=pass (p=reject) header.from=xyz.de"]
    assert dmarc_pass_by(results, "xyz.de", TRUSTED) == ("mx.xyz.de",)


def test_dmarc_pass_from_an_untrusted_authserv_id_is_ignored() -> None:
    results = ["mx.evil.com; dmarc=pass header.from=xyz.de"]
    assert dmarc_pass_by(results, "xyz.de", TRUSTED) == ()


def test_no_trusted_ids_means_no_header_is_believed() -> None:
    assert dmarc_pass_by(["mx.xyz.de; dmarc=pass header.from=xyz.de"], "xyz.de", ()) == ()


@pytest.mark.parametrize("result", ["fail", "none", "temperror", "permerror", "bestguesspass"])
def test_dmarc_other_than_pass_proves_nothing(result: str) -> None:
    results = [f"mx.xyz.de; dmarc={result} header.from=xyz.de"]
    assert dmarc_pass_by(results, "xyz.de", TRUSTED) == ()


@pytest.mark.parametrize("header_from", ["evil.com", "mail.xyz.de", "xyz.de.evil.com", ""])
def test_dmarc_pass_for_another_header_from_proves_nothing(header_from: str) -> None:
    results = [f"mx.xyz.de; dmarc=pass header.from={header_from}"]
    assert dmarc_pass_by(results, "xyz.de", TRUSTED) == ()


def test_dkim_or_spf_pass_alone_is_not_dmarc() -> None:
    results = ["mx.xyz.de; dkim=pass header.d=xyz.de; spf=pass smtp.mailfrom=xyz.de"]
    assert dmarc_pass_by(results, "xyz.de", TRUSTED) == ()


def test_a_server_reporting_twice_is_named_once() -> None:
    results = ["mx.xyz.de; dmarc=pass header.from=xyz.de"] * 2
    assert dmarc_pass_by(results, "xyz.de", TRUSTED) == ("mx.xyz.de",)


def test_empty_from_domain_never_matches_an_empty_header_from() -> None:
    assert dmarc_pass_by(["mx.xyz.de; dmarc=pass header.from="], "", TRUSTED) == ()


def test_one_trusted_pass_among_other_headers_is_found() -> None:
    results = ["mx.evil.com; dmarc=pass header.from=xyz.de",
               "mx.xyz.de; dmarc=fail header.from=xyz.de",
               "mx2.xyz.de; dmarc=pass header.from=xyz.de"]
    assert dmarc_pass_by(results, "xyz.de", ("mx.xyz.de", "mx2.xyz.de")) == ("mx2.xyz.de",)


@pytest.mark.parametrize("value", [
    "MX.XYZ.DE; DMARC=PASS header.from=XYZ.DE",
    "mx.xyz.de 1; dmarc=pass header.from=xyz.de",
    "mx.xyz.de (our MX); dmarc=pass header.from=xyz.de",
    "mx.xyz.de;\r\n\tdmarc=pass\r\n header.from=xyz.de",
    'mx.xyz.de; dmarc=pass header.from="xyz.de"',
    "mx.xyz.de; dmarc=pass header.from=alice@xyz.de",
    "mx.xyz.de; dmarc=pass (geprüft) header.from=xyz.de",
])
def test_dmarc_pass_is_read_case_insensitively_in_any_legal_form(value: str) -> None:
    assert dmarc_pass_by([value], "xyz.de", ("Mx.Xyz.De",)) == ("mx.xyz.de",)


@pytest.mark.parametrize("header_from", ["bücher.de", "BÜCHER.de", "xn--bcher-kva.de",
                                         "jörg@bücher.de"])
def test_header_from_is_compared_in_idna(header_from: str) -> None:
    results = [f"mx.xyz.de; dmarc=pass header.from={header_from}"]
    assert dmarc_pass_by(results, "xn--bcher-kva.de", TRUSTED) == ("mx.xyz.de",)


@pytest.mark.parametrize(("server", "value"), [
    ("mx.google.com",
     "mx.google.com; dkim=pass header.i=@xyz.de header.s=s1 header.b=AbCdEf12; spf=pass "
     "(google.com: domain of bounces@xyz.de designates 192.0.2.1 as permitted sender) "
     "smtp.mailfrom=bounces@xyz.de; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=xyz.de"),
    ("mx.xyz.de",
     "mx.xyz.de; dkim=pass header.d=xyz.de header.s=dkim header.b=AbCd; dmarc=pass "
     "(policy=reject) header.from=xyz.de; spf=pass (mx.xyz.de: domain of bounce@xyz.de "
     "designates 192.0.2.1 as permitted sender) smtp.mailfrom=bounce@xyz.de"),
    ("mx6.messagingengine.com",
     "mx6.messagingengine.com; dkim=pass (2048-bit rsa key sha256) header.d=xyz.de "
     "header.b=AbCd header.a=rsa-sha256 header.s=fm1 x-bits=2048; dmarc=pass "
     "policy.published-domain-policy=reject policy.applied-disposition=none "
     "(p=reject,d=none,d.eval=none) policy.policy-from=p header.from=xyz.de"),
])
def test_real_world_authentication_results_are_read(server: str, value: str) -> None:
    assert dmarc_pass_by([value], "xyz.de", (server,)) == (server,)


@pytest.mark.parametrize("value", [
    "",
    "garbage ;;; ===",
    "mx.xyz.de",
    "mx.xyz.de dmarc=pass header.from=xyz.de",
    "mx.xyz.de; dmarc=pass (unclosed header.from=xyz.de",
    "mx.xyz.de; dmarc=pass " + "(" * 5000 + " header.from=xyz.de",
    "mx.xyz.de; dmarc=pass header.from=xyz.de\x00",
    "mx.xyz.de; =pass header.from=xyz.de",
    "mx.xyz.de 99; dmarc=pass header.from=xyz.de",  # an unknown version
    # Microsoft's format has no authserv-id: it cannot be trusted.
    "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=xyz.de; dkim=pass (signature was verified)"
    " header.d=xyz.de;dmarc=pass action=none header.from=xyz.de;compauth=pass reason=100",
])
def test_malformed_authentication_results_are_ignored(value: str) -> None:
    assert dmarc_pass_by([value], "xyz.de", (*TRUSTED, "spf=pass")) == ()


@settings(max_examples=300, deadline=None)
@given(tail=st.text(max_size=300))
def test_arbitrary_authentication_results_never_raise(tail: str) -> None:
    dmarc_pass_by(["mx.xyz.de;" + tail], "xyz.de", TRUSTED)


def test_overlong_authentication_results_are_not_parsed() -> None:
    padding = "dkim=pass header.d=xyz.de header.b=AbCdEf; " * (MAX_AUTH_RESULTS_LENGTH // 40)
    value = f"mx.xyz.de; {padding}dmarc=pass header.from=xyz.de"
    started = time.monotonic()
    assert dmarc_pass_by([value], "xyz.de", TRUSTED) == ()
    assert time.monotonic() - started < 0.5


def test_only_the_first_trusted_headers_are_read() -> None:
    failing = ["mx.xyz.de; dmarc=fail header.from=xyz.de"] * MAX_AUTH_RESULTS
    passing = ["mx.xyz.de; dmarc=pass header.from=xyz.de"]
    assert dmarc_pass_by(failing + passing, "xyz.de", TRUSTED) == ()
    assert dmarc_pass_by(failing[1:] + passing, "xyz.de", TRUSTED) == ("mx.xyz.de",)


def test_untrusted_headers_do_not_use_up_the_limit() -> None:
    untrusted = ["mx.evil.com; dmarc=fail header.from=xyz.de"] * (MAX_AUTH_RESULTS * 10)
    passing = ["mx.xyz.de; dmarc=pass header.from=xyz.de"]
    assert dmarc_pass_by(untrusted + passing, "xyz.de", TRUSTED) == ("mx.xyz.de",)


# --- verdicts -----------------------------------------------------------------------

NOTHING = Proof(from_domain="xyz.de", envelope_domain="evil.com", envelope_aligned=False,
                dkim_checked=True, dkim_domain=None, dmarc_pass_by=())
EVIDENCE = {
    "nothing": NOTHING,
    "envelope": Proof(from_domain="xyz.de", envelope_domain="relay.xyz.de", envelope_aligned=True,
                      dkim_checked=False, dkim_domain=None, dmarc_pass_by=()),
    "dkim": Proof(from_domain="xyz.de", envelope_domain="evil.com", envelope_aligned=False,
                  dkim_checked=True, dkim_domain="mail.xyz.de", dmarc_pass_by=()),
    "dmarc": Proof(from_domain="xyz.de", envelope_domain="evil.com", envelope_aligned=False,
                   dkim_checked=False, dkim_domain=None, dmarc_pass_by=("mx.xyz.de",)),
}
PASSES = {
    SenderPolicy.ALIGNED: {"nothing": False, "envelope": True, "dkim": True, "dmarc": True},
    SenderPolicy.DKIM: {"nothing": False, "envelope": False, "dkim": True, "dmarc": True},
    SenderPolicy.HEADER: {"nothing": True, "envelope": True, "dkim": True, "dmarc": True},
}


@pytest.mark.parametrize("policy", list(SenderPolicy))
@pytest.mark.parametrize("evidence", list(EVIDENCE))
def test_each_policy_counts_its_evidence(policy: SenderPolicy, evidence: str) -> None:
    assert verdict(policy, EVIDENCE[evidence]).passed is PASSES[policy][evidence]


def test_policy_values_are_the_configured_names() -> None:
    assert [policy.value for policy in SenderPolicy] == ["aligned", "dkim", "header"]
    assert SenderPolicy("dkim") is SenderPolicy.DKIM


@pytest.mark.parametrize(("evidence", "named"), [
    ("envelope", "envelope sender domain relay.xyz.de aligns"),
    ("dkim", "DKIM signature by d=mail.xyz.de"),
    ("dmarc", "dmarc=pass for the From domain reported by mx.xyz.de"),
])
def test_passing_reason_names_what_proved_it(evidence: str, named: str) -> None:
    assert named in verdict(SenderPolicy.ALIGNED, EVIDENCE[evidence]).reason


def test_failing_reason_names_all_that_was_missing() -> None:
    passed, reason = verdict(SenderPolicy.ALIGNED, NOTHING)
    assert not passed
    assert "evil.com does not align" in reason
    assert "no valid DKIM signature" in reason
    assert "no dmarc=pass from a trusted authserv-id" in reason


def test_dkim_policy_reason_does_not_mention_the_envelope() -> None:
    reason = verdict(SenderPolicy.DKIM, EVIDENCE["envelope"]).reason
    assert "envelope" not in reason
    assert "policy 'dkim'" in reason


def test_header_policy_passes_and_says_the_from_is_unproven() -> None:
    assert verdict(SenderPolicy.HEADER, NOTHING) == (True, "policy 'header' takes the From "
                                                           "xyz.de unproven")


def test_from_without_domain_is_never_proven() -> None:
    proof = prove(MESSAGE, from_domain="", envelope_sender="", auth_results=(),
                  trusted_ids=TRUSTED, dns_txt=FakeDns())
    assert verdict(SenderPolicy.ALIGNED, proof) == (False, "the From has no domain to prove")


# --- prove --------------------------------------------------------------------------


def test_aligned_envelope_proves_without_dkim_work(private_pem: bytes, key_record: bytes) -> None:
    resolver = dns_with_key(key_record)
    proof = prove(signed(MESSAGE, private_pem), from_domain="xyz.de",
                  envelope_sender="bounces+77@relay.xyz.de", auth_results=(),
                  trusted_ids=TRUSTED, dns_txt=resolver)
    assert proof.envelope_aligned and not proof.dkim_checked
    assert resolver.queries == []
    assert verdict(SenderPolicy.ALIGNED, proof).passed


def test_dkim_policy_verifies_dkim_despite_an_aligned_envelope(
        private_pem: bytes, key_record: bytes) -> None:
    proof = prove(signed(MESSAGE, private_pem), from_domain="xyz.de",
                  envelope_sender="bounces@xyz.de", auth_results=(), trusted_ids=TRUSTED,
                  dns_txt=dns_with_key(key_record), policy=SenderPolicy.DKIM)
    assert proof.dkim_checked and proof.dkim_domain == "xyz.de"
    assert verdict(SenderPolicy.DKIM, proof).passed


def test_trusted_dmarc_pass_proves_without_dkim_work(private_pem: bytes) -> None:
    resolver = FakeDns()
    proof = prove(signed(MESSAGE, private_pem), from_domain="xyz.de", envelope_sender="x@evil.com",
                  auth_results=["mx.xyz.de; dmarc=pass header.from=xyz.de"],
                  trusted_ids=TRUSTED, dns_txt=resolver, policy=SenderPolicy.DKIM)
    assert proof.dmarc_pass_by == ("mx.xyz.de",) and not proof.dkim_checked
    assert resolver.queries == []


def test_forwarded_mail_is_proven_by_dkim_when_the_envelope_does_not_align(
        private_pem: bytes, key_record: bytes) -> None:
    proof = prove(signed(MESSAGE, private_pem), from_domain="xyz.de",
                  envelope_sender="srs0=ab=cd=xyz.de=alice@forwarder.example",
                  auth_results=["mx.evil.com; dmarc=pass header.from=xyz.de"],
                  trusted_ids=TRUSTED, dns_txt=dns_with_key(key_record))
    assert proof == Proof(from_domain="xyz.de", envelope_domain="forwarder.example",
                          envelope_aligned=False, dkim_checked=True, dkim_domain="xyz.de",
                          dmarc_pass_by=())
    assert verdict(SenderPolicy.ALIGNED, proof).passed


@pytest.mark.parametrize("sender", [None, "", "<>"])
def test_null_envelope_sender_aligns_with_nothing(sender: str | None) -> None:
    proof = prove(MESSAGE, from_domain="xyz.de", envelope_sender=sender, auth_results=(),
                  trusted_ids=TRUSTED, dns_txt=FakeDns())
    assert not proof.envelope_aligned and proof.envelope_domain == ""
    passed, reason = verdict(SenderPolicy.ALIGNED, proof)
    assert not passed and "null envelope sender aligns with nothing" in reason


def test_header_policy_does_no_dkim_work(private_pem: bytes, key_record: bytes) -> None:
    resolver = dns_with_key(key_record)
    proof = prove(signed(MESSAGE, private_pem), from_domain="xyz.de", envelope_sender=None,
                  auth_results=(), trusted_ids=(), dns_txt=resolver, policy=SenderPolicy.HEADER)
    assert not proof.dkim_checked and resolver.queries == []
    assert verdict(SenderPolicy.HEADER, proof).passed


def test_without_a_resolver_dkim_is_not_checked_and_the_reason_says_so(
        private_pem: bytes) -> None:
    proof = prove(signed(MESSAGE, private_pem), from_domain="xyz.de",
                  envelope_sender="x@evil.com", auth_results=(), trusted_ids=TRUSTED,
                  dns_txt=None, policy=SenderPolicy.DKIM)
    passed, reason = verdict(SenderPolicy.DKIM, proof)
    assert not proof.dkim_checked and not passed
    assert "DKIM not checked" in reason


def test_from_domain_is_normalized_before_comparing(private_pem: bytes, key_record: bytes) -> None:
    proof = prove(signed(MESSAGE, private_pem), from_domain="XYZ.de.", envelope_sender=None,
                  auth_results=["mx.xyz.de; dmarc=pass header.from=xyz.de"], trusted_ids=TRUSTED,
                  dns_txt=dns_with_key(key_record), policy=SenderPolicy.DKIM)
    assert proof.from_domain == "xyz.de" and proof.dmarc_pass_by == ("mx.xyz.de",)


# --- system_dns against a DNS server on localhost -------------------------------------


@pytest.fixture
def dns_server() -> Iterator[int]:
    """A UDP DNS server on localhost: one TXT record in two strings, NXDOMAIN for the rest."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, client = server.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            name = query.question[0].name.to_text()
            if name == "s1._domainkey.xyz.de.":
                response.answer.append(dns.rrset.from_text(
                    name, 300, "IN", "TXT", '"v=DKIM1; k=rsa; " "p=AAAA"'))
            elif name != "empty.xyz.de.":
                response.set_rcode(dns.rcode.NXDOMAIN)
            server.sendto(response.to_wire(), client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_system_dns_joins_the_strings_of_a_txt_record(dns_server: int) -> None:
    lookup = system_dns(timeout=2, nameservers=["127.0.0.1"], port=dns_server)
    assert lookup(b"s1._domainkey.xyz.de") == b"v=DKIM1; k=rsa; p=AAAA"


@pytest.mark.parametrize("name", [b"s2._domainkey.xyz.de", b"empty.xyz.de", b"\xff.xyz.de",
                                  b"a..b"])
def test_system_dns_answers_none_for_no_record(dns_server: int, name: bytes) -> None:
    lookup = system_dns(timeout=2, nameservers=["127.0.0.1"], port=dns_server)
    assert lookup(name) is None


def test_system_dns_answers_none_after_its_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        lookup = system_dns(timeout=0.3, nameservers=["127.0.0.1"],
                            port=silent.getsockname()[1])
        started = time.monotonic()
        assert lookup(b"s1._domainkey.xyz.de") is None
        assert time.monotonic() - started < 2


def test_system_dns_verifies_a_real_signature_end_to_end(
        private_pem: bytes, key_record: bytes) -> None:
    # The resolver plugged into dkimpy the way prove() does, answering from localhost.
    record = key_record.decode()
    chunks = " ".join(f'"{record[i:i + 255]}"' for i in range(0, len(record), 255))
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def answer_once() -> None:
        wire, client = server.recvfrom(4096)
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "TXT",
                                                   chunks))
        server.sendto(response.to_wire(), client)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    try:
        lookup = system_dns(timeout=2, nameservers=["127.0.0.1"], port=server.getsockname()[1])
        assert dkim_aligned_domain(signed(MESSAGE, private_pem), "xyz.de", lookup) == "xyz.de"
    finally:
        thread.join(timeout=3)
        server.close()
