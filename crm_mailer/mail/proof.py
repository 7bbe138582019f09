"""Sender proof: is the header From of a message proven, under a tenant's policy?

Three kinds of evidence, each a small check below; which ones count is one table
(`_RULES`) per policy:

- the envelope sender (MAIL FROM) is in the From's organizational domain (relaxed
  alignment, as DMARC: both domains have the same registrable domain on the Public
  Suffix List);
- a DKIM signature that verifies and whose d= is aligned with the From in that sense;
- an Authentication-Results header (RFC 8601) from a trusted authserv-id reporting
  dmarc=pass for exactly the From domain. Only list servers that remove
  Authentication-Results headers bearing their own id from incoming mail: anybody can
  write such a header.

Pure code: DNS goes through a resolver passed in (`system_dns()` in production), so
tests run offline. Hostile input never raises and never takes long: at most
`MAX_DKIM_ATTEMPTS` signatures are verified within `DKIM_BUDGET_SECONDS`, and only
Authentication-Results headers that claim a trusted id are parsed, the first few.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import NamedTuple

import authres
import dkim
import dkim.canonicalization
import dkim.util
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from publicsuffixlist import PublicSuffixList

from crm_mailer.mail.addresses import normalize_domain, split_address

DnsTxt = Callable[[bytes], bytes | None]
"""A TXT lookup: query name (A-labels, no trailing dot) -> the record's bytes, or None."""

MAX_DKIM_ATTEMPTS = 5  # aligned signatures verified per message; real mail has one or two
MAX_DKIM_HEADER = 65_536  # bytes of header block dkimpy is given to read
MAX_DKIM_FOLDS = 1000  # folded header lines, likewise
DKIM_BUDGET_SECONDS = 5.0  # no verification starts after this; one takes up to 3 s at 30 MB
DNS_TIMEOUT_SECONDS = 5.0
MAX_AUTH_RESULTS = 10  # trusted Authentication-Results parsed per message, topmost first
MAX_AUTH_RESULTS_LENGTH = 8192  # authres parses in quadratic time: 800 kB take 10 s

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_FIRST_TOKEN = re.compile(r"\s*([^\s;(]+)")
# A property value holding non-ASCII text (an EAI address or a U-label domain), which
# authres cannot read: converted to ASCII before parsing.
# A property value after "=": possessive and stopping at the next "=", so that the scan is
# linear ("=" * 8000 took 300 ms with a backtracking pattern).
_NON_ASCII_VALUE = re.compile(r'(?<==)[^\s;()"=]++')
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_DKIM_SIGNATURE = re.compile(rb"^dkim-signature[ \t]*:", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")

# dkimpy logs every failure at level ERROR with parts of the hostile header in it; the
# root logger would print them. This logger is outside the hierarchy and silent.
_SILENT = logging.Logger("crm_mailer.mail.proof.dkimpy", level=logging.CRITICAL + 1)


class SenderPolicy(StrEnum):
    """What a tenant accepts as proof of the header From."""

    ALIGNED = "aligned"  # envelope alignment, an aligned DKIM signature or trusted dmarc=pass
    DKIM = "dkim"  # an aligned DKIM signature or trusted dmarc=pass; the envelope is forgeable
    HEADER = "header"  # no proof: for relays that rewrite senders and do not sign; weaker


@dataclass(frozen=True, slots=True)
class Proof:
    """The evidence found for one message's header From; empty fields prove nothing."""

    from_domain: str
    envelope_domain: str  # "" for the null sender (MAIL FROM:<>) or no address
    envelope_aligned: bool
    dkim_checked: bool  # False when DKIM was skipped (not needed, or no resolver)
    dkim_domain: str | None  # d= of a valid signature aligned with the From
    dmarc_pass_by: tuple[str, ...]  # trusted authserv-ids with dmarc=pass for the From domain


class Verdict(NamedTuple):
    """Whether the From is proven, and a human-readable reason naming what (not) proved it."""

    passed: bool
    reason: str


@functools.cache
def _psl() -> PublicSuffixList:
    # The list ships in the wheel (never fetched at run time); private entries such as
    # github.io count as suffixes too, so two of their customers never align.
    return PublicSuffixList()


def registrable_domain(domain: str) -> str:
    """The organizational domain: `mail.xyz.de` -> `xyz.de`, `a.foo.co.uk` -> `foo.co.uk`.

    A public suffix is its own (`co.uk` -> `co.uk`), so it aligns only with itself;
    an unknown TLD follows the PSL default rule `*` (`a.b.example` -> `b.example`);
    what is not a host name (an address literal, a bare IP address) gives "".
    """
    domain = normalize_domain(domain)
    labels = domain.split(".")
    if not domain or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return ""
    return _psl().privatesuffix(domain) or domain


def aligned(domain_a: str, domain_b: str) -> bool:
    """True if both domains have the same registrable domain (DMARC relaxed alignment)."""
    registrable = registrable_domain(domain_a)
    return bool(registrable) and registrable == registrable_domain(domain_b)


def envelope_domain(envelope_sender: str | None) -> str:
    """The normalized domain of MAIL FROM; "" for the null sender `<>` or a non-address."""
    sender = (envelope_sender or "").strip().removeprefix("<").removesuffix(">")
    parts = split_address(sender)
    return normalize_domain(parts[1]) if parts else ""


# --- DKIM ---------------------------------------------------------------------------


def _query_name(name: bytes) -> bytes | None:
    """dkimpy's query name (`s._domainkey.d.`, d= possibly UTF-8) in A-labels, no dot."""
    try:
        labels = name.decode("utf-8").rstrip(".").split(".")
        # Label by label: IDNA refuses the underscore of `_domainkey`.
        ascii_labels = [label.lower() if label.isascii() else normalize_domain(label)
                        for label in labels]
        return ".".join(ascii_labels).encode("ascii")
    except UnicodeError:
        return None


def _dkimpy_dnsfunc(dns_txt: DnsTxt) -> Callable[..., bytes | None]:
    """Adapt a DnsTxt to dkimpy's dnsfunc, which is also passed a timeout."""

    def lookup(name: bytes, timeout: float = DNS_TIMEOUT_SECONDS) -> bytes | None:
        del timeout  # the resolver carries its own
        qname = _query_name(name)
        return (dns_txt(qname) or None) if qname else None

    return lookup


def _signing_domain(tags: dict[bytes, bytes]) -> str:
    """The normalized d= of a parsed DKIM-Signature, "" if absent or not text."""
    try:
        return normalize_domain(tags.get(b"d", b"").decode("utf-8"))
    except UnicodeError:
        return ""


def _signs_from(tags: dict[bytes, bytes]) -> bool:
    """True if h= names From: dkimpy verifies signatures that leave it out (RFC 6376
    6.1.1 says to ignore them)."""
    return b"from" in {name.strip().lower() for name in tags.get(b"h", b"").split(b":")}


def _covers_body(tags: dict[bytes, bytes], body: bytes) -> bool:
    """True unless l= leaves part of the body unsigned: dkimpy honours it, which would let
    anyone append to a signed message."""
    if b"l" not in tags:
        return True
    try:
        policy = dkim.canonicalization.CanonicalizationPolicy.from_c_value(tags.get(b"c"))
        return int(tags[b"l"]) >= len(policy.canonicalize_body(body))
    except Exception:  # a malformed c= or l=: dkimpy would reject it too
        return False


def dkim_aligned_domain(
    raw: bytes, from_domain: str, dns_txt: DnsTxt, *, budget: float = DKIM_BUDGET_SECONDS
) -> str | None:
    """The d= of the first valid DKIM signature aligned with the From domain, else None.

    Signatures not aligned with the From are not verified at all (no DNS query); of the
    aligned ones at most MAX_DKIM_ATTEMPTS are, none starting after `budget` seconds.
    Any failure, including an exception from dkimpy or the resolver, is "not valid".
    """
    header_end = _HEADER_END.search(raw)
    header_length = header_end.start() if header_end else len(raw)
    if not from_domain or not _DKIM_SIGNATURE.search(raw, 0, header_length):
        return None  # spares parsing a large unsigned message
    folds = raw.count(b"\n ", 0, header_length) + raw.count(b"\n\t", 0, header_length)
    if header_length > MAX_DKIM_HEADER or folds > MAX_DKIM_FOLDS:
        return None  # dkimpy joins folded lines in quadratic time: no mail signs such a header
    deadline = time.monotonic() + budget
    dnsfunc = _dkimpy_dnsfunc(dns_txt)
    try:
        signer = dkim.DKIM(raw, logger=_SILENT)
        signatures = [value for name, value in signer.headers if name.lower() == b"dkim-signature"]
    except Exception:
        return None
    attempts = 0
    for index, value in enumerate(signatures):
        try:
            tags = dkim.util.parse_tag_value(value)
        except Exception:
            continue
        domain = _signing_domain(tags)
        if not aligned(domain, from_domain) or not _signs_from(tags):
            continue
        if attempts >= MAX_DKIM_ATTEMPTS or time.monotonic() >= deadline:
            break
        attempts += 1  # the body check below costs as much as a verification
        try:
            valid = _covers_body(tags, signer.body) and signer.verify(idx=index, dnsfunc=dnsfunc)
        except Exception:  # dkimpy raises DKIMException and, on odd input, anything
            continue
        if valid is True:
            return domain
    return None


def system_dns(
    timeout: float = DNS_TIMEOUT_SECONDS, nameservers: Sequence[str] = (), port: int = 53
) -> DnsTxt:
    """A DnsTxt on dnspython (blocking: call DKIM from a worker thread); None on any failure.

    Uses /etc/resolv.conf unless nameservers are given; raises dns.resolver.
    NoResolverConfiguration at once if there is neither.
    """
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = list(nameservers)
    resolver.port = port
    resolver.lifetime = timeout

    def lookup(name: bytes) -> bytes | None:
        try:
            qname = dns.name.from_text(name.decode("ascii"), origin=dns.name.root)
            answer = resolver.resolve(qname, dns.rdatatype.TXT, search=False,
                                      raise_on_no_answer=False)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return None  # NXDOMAIN, timeout, SERVFAIL...: no key, so no valid signature
        if answer.rrset is None:
            return None
        # One record is expected; it may be split into strings of 255 bytes.
        for record in answer.rrset:
            return b"".join(record.strings)
        return None

    return lookup


# --- Authentication-Results ---------------------------------------------------------


def _ascii_value(value: str) -> str:
    """A property value in ASCII: a domain (or an address's domain) in A-labels."""
    local, at, domain = value.rpartition("@")
    domain = normalize_domain(domain)
    return _NON_ASCII.sub("?", f"{local}{at}{domain}")


def _auth_results_text(value: str) -> str:
    """An Authentication-Results value in ASCII, as authres needs it (it unfolds itself).

    Non-ASCII text elsewhere (comments, an EAI local part) becomes `?`, which changes
    nothing this module reads.
    """
    if value.isascii():
        return value
    value = _NON_ASCII_VALUE.sub(
        lambda match: match.group() if match.group().isascii() else _ascii_value(match.group()),
        value)
    return _NON_ASCII.sub("?", value)


def _header_from_domain(value: str) -> str:
    """header.from as a normalized domain; some servers write the whole address."""
    return normalize_domain(value.rpartition("@")[2])


def dmarc_pass_by(
    auth_results: Sequence[str], from_domain: str, trusted_ids: Collection[str]
) -> tuple[str, ...]:
    """The trusted authserv-ids that report dmarc=pass with header.from = the From domain.

    `auth_results` are the header values, topmost first. A header that does not parse,
    is too long, or names an untrusted authserv-id is ignored, never an exception.
    """
    trusted = {normalize_domain(server) for server in trusted_ids}
    from_domain = normalize_domain(from_domain)
    if not from_domain:
        return ()
    found: list[str] = []
    parsed = 0
    for value in auth_results:
        if parsed >= MAX_AUTH_RESULTS:
            break
        first = _FIRST_TOKEN.match(value)
        if not first or normalize_domain(first.group(1)) not in trusted:
            continue  # cheap: only what claims a trusted id is parsed
        if len(value) > MAX_AUTH_RESULTS_LENGTH:
            continue
        parsed += 1
        try:
            header = authres.all_features().parse_value(_auth_results_text(value))
            server = normalize_domain(str(header.authserv_id))
            passed = any(
                str(result.method).lower() == "dmarc"
                and str(result.result).lower() == "pass"
                and any(prop.type.lower() == "header" and prop.name.lower() == "from"
                        and _header_from_domain(str(prop.value)) == from_domain
                        for prop in result.properties)
                for result in header.results
            )
        except Exception:  # authres raises its SyntaxError, and RecursionError on ((((
            continue
        if passed and server in trusted and server not in found:
            found.append(server)
    return tuple(found)


# --- Verdict ------------------------------------------------------------------------


def _by_envelope(proof: Proof) -> str | None:
    if proof.envelope_aligned:
        return f"envelope sender domain {proof.envelope_domain} aligns with the From"
    return None


def _by_dkim(proof: Proof) -> str | None:
    if proof.dkim_domain:
        return f"valid DKIM signature by d={proof.dkim_domain} aligns with the From"
    return None


def _by_dmarc(proof: Proof) -> str | None:
    if proof.dmarc_pass_by:
        return f"dmarc=pass for the From domain reported by {', '.join(proof.dmarc_pass_by)}"
    return None


_Rule = Callable[[Proof], str | None]
# The declared order of evidence each policy counts; the first rules are the cheapest.
_RULES: dict[SenderPolicy, tuple[_Rule, ...]] = {
    SenderPolicy.ALIGNED: (_by_envelope, _by_dmarc, _by_dkim),
    SenderPolicy.DKIM: (_by_dmarc, _by_dkim),
    SenderPolicy.HEADER: (),
}


def _missing(policy: SenderPolicy, proof: Proof) -> str:
    """What would have proven the From under the policy, and was not there."""
    missing: list[str] = []
    if _by_envelope in _RULES[policy]:
        missing.append(f"envelope sender domain {proof.envelope_domain} does not align"
                       if proof.envelope_domain else "the null envelope sender aligns with nothing")
    if _by_dmarc in _RULES[policy]:
        missing.append("no dmarc=pass from a trusted authserv-id")
    if _by_dkim in _RULES[policy]:
        missing.append("no valid DKIM signature aligned with the From" if proof.dkim_checked
                       else "DKIM not checked")
    return "; ".join(missing)


def verdict(policy: SenderPolicy, proof: Proof) -> Verdict:
    """Whether the proof satisfies the policy; pass the policy `prove` was given."""
    if policy is SenderPolicy.HEADER:
        return Verdict(True, f"policy 'header' takes the From {proof.from_domain} unproven")
    if not proof.from_domain:
        return Verdict(False, "the From has no domain to prove")
    found = [reason for rule in _RULES[policy] if (reason := rule(proof))]
    if found:
        return Verdict(True, f"From {proof.from_domain} proven: {'; '.join(found)}")
    return Verdict(False, f"From {proof.from_domain} not proven under policy "
                          f"'{policy}': {_missing(policy, proof)}")


def prove(
    raw: bytes,
    *,
    from_domain: str,
    envelope_sender: str | None,
    auth_results: Sequence[str],
    trusted_ids: Collection[str],
    dns_txt: DnsTxt | None,
    policy: SenderPolicy = SenderPolicy.ALIGNED,
) -> Proof:
    """Gather the evidence for the From domain; DKIM, the slow part, only if still needed.

    DKIM is skipped under policy 'header', when cheaper evidence already satisfies the
    policy, or without a resolver; `proof.dkim_checked` says which.
    """
    from_domain = normalize_domain(from_domain)
    sender_domain = envelope_domain(envelope_sender)
    proof = Proof(
        from_domain=from_domain,
        envelope_domain=sender_domain,
        envelope_aligned=aligned(sender_domain, from_domain),
        dkim_checked=False,
        dkim_domain=None,
        dmarc_pass_by=dmarc_pass_by(auth_results, from_domain, trusted_ids),
    )
    if dns_txt is None or policy is SenderPolicy.HEADER or verdict(policy, proof).passed:
        return proof
    return replace(proof, dkim_checked=True,
                   dkim_domain=dkim_aligned_domain(raw, from_domain, dns_txt))
