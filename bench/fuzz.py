"""Fuzz the parse-and-match path, without a database: random and mutated messages.

Every message goes through what ingestion does before it stores: the header block as
read over SMTP, the sender claim, the sender proof (DKIM with a resolver that knows no
keys), the full parse, the subject numbers, and the matching pipeline for each tenant of
fixtures/eml/directory.json (as synthetic TenantFacts). The only exception allowed is
MessageRefused (a limit or an ambiguous sender: the daemon answers 5xx). Anything else is
a finding, and so is a message that takes longer than --slow-ms, that the parser hands
back with text a database refuses (NUL, lone surrogates), or that exhausts --max-memory-mb.

The inputs are the messages of fixtures/eml and fixtures/eml/hostile (generated parts
capped at 256 KB; known bugs, the cases marked xfail, only with --known-bugs) and random
MIME trees, each mutated by a few seedable operators: byte flips, insertions of CR, LF,
NUL, 8-bit bytes, boundaries, commas, parentheses and encoded words, repeated tokens,
duplicated header lines, folds, truncation, splicing.
Iteration I of seed S is always the same input (for the same fixture files): rerun it
with --seed S --iteration I, or replay the saved input with --replay.

    .venv/bin/python bench/fuzz.py --seconds 300 [--seed S] [--save DIR] [--jobs 2]
    .venv/bin/python bench/fuzz.py --seed S --iteration I      # one input, in detail
    .venv/bin/python bench/fuzz.py --replay DIR/finding.eml     # a saved input

Prints a summary; exits 1 when it found anything.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import dataclasses
import gc
import json
import multiprocessing
import os
import pstats
import random
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crm_mailer.errors import MessageRefused  # noqa: E402
from crm_mailer.mail.addresses import (  # noqa: E402
    address_domain,
    normalize_address,
    normalize_domain,
)
from crm_mailer.mail.parse import (  # noqa: E402
    DEFAULT_LIMITS,
    Attachment,
    Limits,
    ParsedMessage,
    decode_bytes,
    header_block,
    parse_message,
    sender_claim,
    unfold,
)
from crm_mailer.mail.proof import SenderPolicy, Verdict, prove, verdict  # noqa: E402
from crm_mailer.matching import pipeline  # noqa: E402
from crm_mailer.matching.decide import candidates  # noqa: E402
from crm_mailer.matching.facts import (  # noqa: E402
    CompanyRef,
    ContactRef,
    MatchInput,
    RecordKind,
    RecordRef,
    TenantFacts,
)
from crm_mailer.matching.number import subject_numbers  # noqa: E402

FIXTURES = ROOT / "fixtures" / "eml"
PLACEHOLDER = b"@@GENERATE@@"
MAX_GENERATED = 256 * 1024  # bytes a `generate` recipe may add to a corpus message
MAX_INPUT = 2 * 1024 * 1024
SAVED_PER_KIND = 5
TRUSTED_IDS = frozenset({"mx.xyz.de"})
PROVEN = {policy: Verdict(True, "fuzz: taken as proven") for policy in SenderPolicy}
ENVELOPES = ("alice@xyz.de", "alice@xyz.de", "bob@acme.com", "bounces+7@relay.xyz.de", "",
             "mallory@evil.example", "\u0130" * 130 + "@xyz.de")


def env(name: str, default: str) -> str:
    return os.environ.get(f"CRM_MAILER_FUZZ_{name}", default)


# --- the directory, as matching sees it ------------------------------------------------------

def tenant_facts() -> list[TenantFacts]:
    """Every tenant of fixtures/eml/directory.json as TenantFacts, normalized as on import."""
    document = json.loads((FIXTURES / "directory.json").read_text(encoding="utf-8"))
    ids = iter(range(1, 1_000_000))
    found = []
    for tenant in document["tenants"]:
        companies = {c["key"]: CompanyRef(next(ids), c["key"]) for c in tenant["companies"]}
        contacts = {}
        for contact in tenant["contacts"]:
            email = normalize_address(contact["email"])
            assert email is not None, contact
            company = companies.get(contact.get("company", ""))
            contacts[email] = ContactRef(next(ids), email, company.id if company else None)

        def record(kind: RecordKind, spec: dict[str, Any],
                   companies: dict[str, CompanyRef] = companies) -> RecordRef:
            company = companies.get(spec.get("company", ""))
            return RecordRef(kind, next(ids), spec["number"], company.id if company else None)

        found.append(TenantFacts(
            tenant_id=next(ids), slug=tenant["slug"],
            hosts=frozenset(normalize_domain(h) for h in tenant["hosts"]),
            sender_domains=frozenset(normalize_domain(d) for d in tenant["sender_domains"]),
            contacts=contacts,
            company_domains={normalize_domain(d): companies[c["key"]]
                             for c in tenant["companies"] for d in c["domains"]},
            companies={c.id: c for c in companies.values()},
            leads={r["number"]: record(RecordKind.LEAD, r) for r in tenant.get("leads", [])},
            projects={r["number"]: record(RecordKind.PROJECT, r)
                      for r in tenant.get("projects", [])},
        ))
    return found


# --- inputs ------------------------------------------------------------------------------------

def load_corpus(known_bugs: bool = False) -> list[bytes]:
    """The fixture messages, generated parts applied and capped at MAX_GENERATED bytes.

    Cases marked xfail (known bugs) are left out unless `known_bugs`: they would find
    themselves again and again, and some take seconds each.
    """
    corpus = []
    for path in sorted(FIXTURES.glob("*.eml")) + sorted((FIXTURES / "hostile").glob("*.eml")):
        raw = path.read_bytes()
        expected_path = path.with_suffix(".expected.json")
        expected: dict[str, Any] = {}
        if expected_path.exists():
            expected = json.loads(expected_path.read_text(encoding="utf-8"))
        if "xfail" in expected and not known_bugs:
            continue
        recipe = expected.get("generate")
        if recipe is not None and PLACEHOLDER in raw:
            repeat = str(recipe["repeat"]).encode("utf-8")
            times = min(int(recipe["times"]), MAX_GENERATED // max(len(repeat), 1) + 1)
            raw = raw.replace(PLACEHOLDER, repeat * times)
        corpus.append(raw)
    return corpus


CHARSETS = ("utf-8", "us-ascii", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "utf-16",
            "utf-16-le", "utf-7", "utf-32", "x-unknown", "", "unicode-1-1-utf-7", "gb2312",
            "rot13", "base64", "hex", "zlib", "idna", "punycode", "unicode_escape",
            "raw_unicode_escape", "uu", "quopri", "mbcs", "utf-8*de", "utf-8'de'", "\u00fc",
            "big5hkscs", "iso-2022-jp", "hz", "cp65001", "latin-1'")
ENCODINGS = (b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable", b"x-uuencode",
             b"uuencode", b"base64x", b"Quoted-Printable", b"", b"x-token")
CONTENT_TYPES = (b"text/plain", b"text/html", b"text/enriched", b"application/pdf",
                 b"application/octet-stream", b"image/png", b"message/rfc822",
                 b"message/delivery-status", b"text/rfc822-headers", b"message/global",
                 b"message/partial", b"application/ms-tnef", b"text", b"/", b"multipart/",
                 b"text/plain/x", b"TEXT/PLAIN")
MULTIPART = (b"multipart/mixed", b"multipart/alternative", b"multipart/related",
             b"multipart/report", b"multipart/digest", b"multipart/signed",
             b"multipart/x-unknown")
FROMS = (b"Alice <alice@xyz.de>", b"alice@xyz.de", b"bob@acme.com", b'"Bob, B." <bob@acme.com>',
         b"=?utf-8?B?QWxpY2U=?= <alice@xyz.de>", b"alice@xyz.de, bob@acme.com",
         b"undisclosed-recipients:;", b"<>", b"@", b"<<alice@xyz.de>>", b"alice@[127.0.0.1]",
         b'"alice@xyz.de" <evil@evil.example>', b"alice(comment)@xyz.de",
         b"Alice <@route:alice@xyz.de>", "J\u00fcrgen <j\u00fcrgen@m\u00fcller-s\u00f6hne.example>"
         .encode(), b"alice @ xyz . de", b"\\\"@xyz.de", b"a" * 300 + b"@xyz.de",
         b"group: alice@xyz.de, bob@acme.com;", b"alice@xyz.de.", b"alice@XN--BRO-HOA.example")
SUBJECTS = (b"XYZ Lead 11111", b"Lead 11111 20001", b"11113", b"Lead 11111)", b"#11111",
            b"=?utf-8?Q?Gr=C3=BC=C3=9Fe_11111?=", b"=?utf-8?B?w7w=?==?utf-8?B?w7w=?= 11112",
            b"Lead \xd9\xa1\xd9\xa1", b"9" * 30, b"-1 +1 0 00011111 1_000",
            "\uff11\uff11\uff11\uff11\uff11".encode(), b"=?rot13?Q?Yrnq?= 11111",
            b"\x00 11111 \x00", b"11111\x0b22222\x1c33333")
DATES = (b"Fri, 20 Nov 2026 09:30:00 +0100", b"31 Dec 9999 23:59:59 +2359",
         b"Thu, 1 Jan 1970 00:00:00 -2359", b"yesterday", b"0", b"Mon, 32 Foo 99999 99:99:99",
         b"Fri, 20 Nov 2026 09:30:00 -0000", b"Fri, 20 Nov 2026 09:30:00 +99999999999")
TOKENS = (b"\r", b"\n", b"\r\n", b"\n\r", b"\x00", b"\r\n\r\n", b",", b"(", b")", b"\\", b'"',
          b"<", b">", b"@", b":", b";", b"=", b"=?", b"?=", b"=?utf-8?q?", b"=?utf-8?b?",
          b"=?x-unknown?Q?=FC?=", b"=?utf-8?B?R3LD?=", b"--", b"\r\n--", b"\t", b" ", b"\r\n ",
          b"\r\n\t", b"\xc3", b"\xef\xbb\xbf", b"\xff\xfe", "\u0130".encode(), b"%", b"%00",
          b"\r\nFrom: mallory@evil.example", b"\r\nContent-Type: multipart/mixed; boundary=z",
          b"\r\n--z\r\n", b"\r\n--z--\r\n", b"begin 644 x.bin\r\n", b"<script>", b"<style>",
          b"<div style='padding-left:100em'>", b"<table><tr><td>", b"&#0;", b"&#xD800;",
          b"&amp;", "\u2028".encode(), "\u202e".encode(), b"\x1b[2J", b"\x85", b"\xa0",
          b"; charset=rot13", b"; boundary=", b"; filename*0*=utf-8''%C3", b"; name=\"",
          b"Content-Transfer-Encoding: base64\r\n", b"=\r\n", b"=C3=", b".\r\n", b"\r\n.\r\n")


def _random_bytes(rng: random.Random, size: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(size))


def _random_text(rng: random.Random) -> bytes:
    pieces = [rng.choice((b"Hallo Bob", b"Gr\xc3\xbc\xc3\x9fe", b"Gr\xfc\xdfe", b"11111",
                          b"<b>fett</b>", b"=C3=BC", b"w7w=", b"\r\n", b" ", b"\x00",
                          b".", b"--z", b"&nbsp;", b"\t", rng.choice(TOKENS)))
              for _ in range(rng.randrange(1, 40))]
    return b"".join(pieces)


def random_message(rng: random.Random) -> bytes:
    """A random message: random headers over a random MIME tree."""
    headers = [b"From: " + rng.choice(FROMS), b"To: " + rng.choice(FROMS),
               b"Subject: " + rng.choice(SUBJECTS), b"Date: " + rng.choice(DATES)]
    if rng.random() < 0.8:
        headers.append(b"Message-ID: <" + _random_text(rng)[:60] + b"@x>")
    if rng.random() < 0.3:
        headers.append(b"Cc: " + b", ".join(rng.choice(FROMS) for _ in range(rng.randrange(5))))
    if rng.random() < 0.2:
        headers.append(b"Authentication-Results: mx.xyz.de; dmarc=pass header.from="
                       + rng.choice((b"xyz.de", b"acme.com", b"\xc3\xbc.example", b"")))
    if rng.random() < 0.1:
        headers.append(b"DKIM-Signature: v=1; a=rsa-sha256; d=xyz.de; s=s; h=from:to; "
                       b"bh=" + _random_text(rng)[:20] + b"; b=" + _random_text(rng)[:40])
    rng.shuffle(headers)
    return b"\r\n".join(headers) + b"\r\nMIME-Version: 1.0\r\n" + _random_part(rng, 0)


def _random_part(rng: random.Random, depth: int) -> bytes:
    """Content headers, an empty line and a body; a multipart holds more of them."""
    if depth < 5 and rng.random() < 0.4:
        boundary = rng.choice((b"z", b"b" + str(depth).encode(), b"", b"a b", b"--", b"z" * 80))
        head = (b"Content-Type: " + rng.choice(MULTIPART) + b"; boundary=\"" + boundary
                + b"\"\r\n\r\n")
        parts = [b"--" + boundary + b"\r\n" + _random_part(rng, depth + 1)
                 for _ in range(rng.randrange(0, 5))]
        closing = b"--" + boundary + b"--\r\n" if rng.random() < 0.8 else b""
        return head + rng.choice((b"", b"preamble\r\n")) + b"\r\n".join(parts) + b"\r\n" \
            + closing + rng.choice((b"", b"epilogue\r\n"))
    content_type = rng.choice(CONTENT_TYPES)
    head = b"Content-Type: " + content_type
    if rng.random() < 0.6:
        head += b"; charset=\"" + rng.choice(CHARSETS).encode("utf-8") + b"\""
    if rng.random() < 0.3:
        head += rng.choice((b"; name=\"x.pdf\"", b"; name*=utf-8''%C3%BC.pdf",
                            b"; name=\"=?utf-8?B?w7w=?=.pdf\"", b"; name=\xfc.pdf"))
    head += b"\r\n"
    if rng.random() < 0.4:
        head += b"Content-Transfer-Encoding: " + rng.choice(ENCODINGS) + b"\r\n"
    if rng.random() < 0.3:
        head += (b"Content-Disposition: " + rng.choice((b"attachment", b"inline", b"x"))
                 + rng.choice((b"", b"; filename=\"a.txt\"", b"; filename*0*=x-unknown''%FC;"
                               b" filename*1=.txt", b"; filename=")) + b"\r\n")
    if content_type.startswith(b"message/") and rng.random() < 0.7:
        body = random_message(rng) if depth < 4 else _random_text(rng)
    elif rng.random() < 0.2:
        body = _random_bytes(rng, rng.randrange(200))
    else:
        body = _random_text(rng)
    return head + b"\r\n" + body + b"\r\n"


# --- mutations ----------------------------------------------------------------------------------

def _position(rng: random.Random, raw: bytes) -> int:
    """Somewhere in the message; half the time within the header block, where it hurts."""
    end = raw.find(b"\r\n\r\n")
    if end > 0 and rng.random() < 0.5:
        return rng.randrange(end + 1)
    return rng.randrange(len(raw) + 1)


def flip_bytes(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 9)):
        if data:
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    return bytes(data)


def insert_token(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    token = rng.choice(TOKENS) if rng.random() < 0.9 else bytes([rng.randrange(128, 256)])
    at = _position(rng, raw)
    return raw[:at] + token + raw[at:]


def insert_repeated(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    token = rng.choice((b",", b"(", b")", b"((", b"\r\n ", b"\x00", b"=?utf-8?q?a?= ", b"; a=b",
                        b"<", b"\"", b"\\", b"--z\r\n", b"<div>", b"<td>", b"a@b.c,", b" 1",
                        b"\r\nX-Pad: y", b"\r\n--z\r\nContent-Type: multipart/mixed; "
                        b"boundary=z\r\n\r\n", rng.choice(TOKENS)))
    times = rng.choice((2, 10, 100, 1000, 10_000, 60_000))
    times = min(times, MAX_INPUT // (2 * len(token)))
    at = _position(rng, raw)
    return raw[:at] + token * times + raw[at:]


def _header_lines(raw: bytes) -> list[tuple[int, int]]:
    end = raw.find(b"\r\n\r\n")
    end = len(raw) if end < 0 else end + 2
    spans, start = [], 0
    while start < end:
        stop = raw.find(b"\r\n", start, end)
        stop = end if stop < 0 else stop + 2
        spans.append((start, stop))
        start = stop
    return spans


def duplicate_header_line(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    spans = _header_lines(raw)
    if not spans:
        return raw
    start, stop = rng.choice(spans)
    at = rng.choice(spans)[rng.randrange(2)]
    times = min(rng.choice((1, 1, 2, 50, 1200)), MAX_INPUT // (stop - start) + 1)
    return raw[:at] + raw[start:stop] * times + raw[at:]


def replace_header_value(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    spans = _header_lines(raw)
    if not spans:
        return raw
    start, stop = rng.choice(spans)
    line = raw[start:stop]
    name = line.partition(b":")[0]
    value = rng.choice((*FROMS, *SUBJECTS, *DATES, rng.choice(MULTIPART) + b"; boundary=z",
                        rng.choice(CONTENT_TYPES) + b"; charset=" + rng.choice(CHARSETS)
                        .encode("utf-8"), rng.choice(ENCODINGS), _random_text(rng)))
    return raw[:start] + name + b": " + value + b"\r\n" + raw[stop:]


def fold(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    spans = _header_lines(raw)
    if not spans:
        return raw
    start, stop = rng.choice(spans)
    at = rng.randrange(start, max(start + 1, stop - 2))
    return raw[:at] + rng.choice((b"\r\n ", b"\r\n\t", b"\r\n", b"\n ", b"\r ")) + raw[at:]


def truncate(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    return raw[:rng.randrange(len(raw) + 1)]


def delete_range(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    start = rng.randrange(len(raw) + 1)
    return raw[:start] + raw[start + rng.randrange(1, 200):]


def splice(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    other = rng.choice(corpus)
    return raw[:rng.randrange(len(raw) + 1)] + other[rng.randrange(len(other) + 1):]


def line_ends(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    new = rng.choice((b"\n", b"\r", b"\n\r", b"\r\r\n"))
    if rng.random() < 0.5:
        return raw.replace(b"\r\n", new)
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + raw[at:at + 2000].replace(b"\r\n", new) + raw[at + 2000:]


_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\r\n]+)', re.IGNORECASE)


def boundary_games(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    boundaries: list[bytes] = _BOUNDARY.findall(raw) or [b"z"]
    boundary = rng.choice(boundaries)
    choice = rng.randrange(4)
    if choice == 0:  # a delimiter or closing line somewhere
        line = b"\r\n--" + boundary + rng.choice((b"", b"--", b" ", b"--x")) + b"\r\n"
        at = _position(rng, raw)
        return raw[:at] + line + raw[at:]
    if choice == 1:  # the closing delimiter gone
        return raw.replace(b"--" + boundary + b"--", b"")
    if choice == 2:  # the declaration changed
        return raw.replace(boundary, rng.choice((b"", b"x", boundary[:1], boundary * 3)), 1)
    # a part declaring the same boundary again, nested
    at = raw.find(b"--" + boundary + b"\r\n")
    nested = (b"--" + boundary + b"\r\nContent-Type: multipart/mixed; boundary=\"" + boundary
              + b"\"\r\n\r\n") * rng.choice((1, 10, 60))
    return raw if at < 0 else raw[:at] + nested + raw[at:]


def wrap(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    """The message inside another, as message/rfc822 or a multipart, a few levels deep."""
    for level in range(rng.randrange(1, 4)):
        if rng.random() < 0.5:
            raw = (b"From: alice@xyz.de\r\nSubject: Fwd 11111\r\nContent-Type: message/rfc822"
                   b"\r\n\r\n" + raw)
        else:
            mark = b"w%d" % level
            raw = (b"From: alice@xyz.de\r\nSubject: Fwd 11111\r\nContent-Type: multipart/mixed;"
                   b" boundary=" + mark + b"\r\n\r\n--" + mark + b"\r\n" + raw + b"\r\n--" + mark
                   + b"--\r\n")
    return raw


def encoded_words(rng: random.Random, raw: bytes, corpus: list[bytes]) -> bytes:
    words = []
    for _ in range(rng.randrange(1, 30)):
        charset = rng.choice(CHARSETS).encode("utf-8")
        kind = rng.choice((b"Q", b"B", b"q", b"b", b"X", b""))
        payload = rng.choice((b"Gr=C3", b"=BC=C3=9Fe", b"R3LD", b"vMOf", b"w7w=", b"===",
                              b"_", b"a?b", b"=FF=FE", b"", _random_text(rng)[:10]))
        words.append(b"=?" + charset + b"?" + kind + b"?" + payload + b"?=")
    token = rng.choice((b" ", b"", b"\r\n ")).join(words)
    at = _position(rng, raw)
    return raw[:at] + token + raw[at:]


Mutator = Callable[[random.Random, bytes, list[bytes]], bytes]
MUTATORS: tuple[Mutator, ...] = (
    flip_bytes, insert_token, insert_token, insert_repeated, duplicate_header_line,
    replace_header_value, replace_header_value, fold, truncate, delete_range, splice,
    line_ends, boundary_games, boundary_games, wrap, encoded_words,
)


@dataclasses.dataclass(frozen=True)
class Input:
    """One fuzz input: the bytes, the envelope sender, the limits, and how it was made."""

    raw: bytes
    envelope: str
    limits: Limits
    recipe: tuple[str, ...]


def random_limits(rng: random.Random) -> Limits:
    """Limits as a configuration may set them (within the ranges settings.py allows)."""
    return Limits(max_header_size=rng.choice((1024, 4096, 65_536, 262_144)),
                  max_headers=rng.choice((10, 50, 1000)),
                  max_addresses_per_header=rng.choice((1, 5, 1000)),
                  max_mime_depth=rng.choice((1, 2, 5, 50)),
                  max_mime_parts=rng.choice((1, 3, 10, 1000)))


def make_input(seed: int, iteration: int, corpus: list[bytes]) -> Input:
    rng = random.Random(f"{seed}/{iteration}")
    if rng.random() < 0.15:
        raw, recipe = random_message(rng), ["random_message"]
    else:
        index = rng.randrange(len(corpus))
        raw, recipe = corpus[index], [f"corpus[{index}]"]
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4, 6))):
        mutate = rng.choice(MUTATORS)
        raw = mutate(rng, raw, corpus)[:MAX_INPUT]
        recipe.append(mutate.__name__)
    limits = random_limits(rng) if rng.random() < 0.2 else DEFAULT_LIMITS
    return Input(raw, rng.choice(ENVELOPES), limits, tuple(recipe))


# --- the path under test ----------------------------------------------------------------------

class Hang(BaseException):
    """Processing one message ran past --hang-seconds (a BaseException: nothing swallows it)."""


def _storable(value: Any, where: str) -> Iterator[str]:
    """What a database would refuse in the parsed message: NUL, lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            yield f"{where} holds NUL"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            yield f"{where} holds a lone surrogate"
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _storable(item, f"{where}[{index}]")
    elif isinstance(value, Attachment):
        yield from _storable(value.filename, f"{where}.filename")
        yield from _storable(value.content_type, f"{where}.content_type")


def check_message(message: ParsedMessage) -> list[str]:
    """Problems the parsed message would cause when stored."""
    problems: list[str] = []
    for name in ("message_id", "subject", "from_address", "to", "cc", "body", "attachments"):
        problems.extend(_storable(getattr(message, name), name))
    if len(message.message_id) > 255:
        problems.append(f"message_id of {len(message.message_id)} characters")
    for address in (*message.to, *message.cc, *message.from_addresses):
        if len(address) > 254:
            problems.append(f"address of {len(address)} characters")
    return problems


class StorageTrouble(Exception):
    """The parsed message holds what the database refuses (it would answer 451 forever)."""


def _no_keys(name: bytes) -> bytes | None:
    return None


def process(item: Input, facts: list[TenantFacts]) -> str:
    """Run the path ingestion runs before storing; the outcome as a short word."""
    limits = item.limits
    block = header_block(item.raw, limits, smtp=True)
    claim = sender_claim(block, limits)
    auth_results = [decode_bytes(unfold(v)) for v in block.values("authentication-results")]
    from_domain = address_domain(claim) if claim else ""
    for policy in SenderPolicy:
        verdict(policy, prove(item.raw, from_domain=from_domain, envelope_sender=item.envelope,
                              auth_results=auth_results, trusted_ids=TRUSTED_IDS,
                              dns_txt=_no_keys, policy=policy))
    message = parse_message(item.raw, limits, block)
    if problems := check_message(message):
        raise StorageTrouble("; ".join(problems[:5]))
    sender = normalize_address(item.envelope) or None
    match = MatchInput(message, sender, subject_numbers(message.subject), PROVEN)
    outcome = "refused by every tenant"
    for tenant in facts:
        result = pipeline.run(match, tenant)
        if not isinstance(result.decision, pipeline.Refused):
            candidates(tenant, result.findings)
            outcome = type(result.decision).__name__.lower()
    return outcome


def refusal_kind(exc: MessageRefused) -> str:
    limit = re.search(r"\((max_\w+)\)", str(exc))
    if limit:
        return f"{type(exc).__name__} ({limit.group(1)})"
    words = re.sub(r"'[^']*'|\d+", "…", str(exc)).split()
    return f"{type(exc).__name__}: {' '.join(words[:6])}"


def _where(exc: BaseException) -> str:
    """The innermost frame of crm_mailer (else the innermost) that raised.

    The header registry's `__call__` wraps every header parse: the frame above it says more.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "crm_mailer" in f.filename and f.name != "__call__"] or frames
    if not ours:
        return "?"
    frame = ours[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"


@dataclasses.dataclass
class Finding:
    kind: str  # the signature findings are grouped by
    seed: int
    iteration: int
    seconds: float
    size: int
    detail: str
    saved: str | None = None


@dataclasses.dataclass
class Stats:
    tried: int = 0
    outcomes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    slowest: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def merge(self, other: Stats) -> None:
        self.tried += other.tried
        self.outcomes.update(other.outcomes)
        self.slowest = sorted(self.slowest + other.slowest, reverse=True)[:5]
        self.counts.update(other.counts)
        for finding in other.findings:
            if sum(f.kind == finding.kind for f in self.findings) < SAVED_PER_KIND:
                self.findings.append(finding)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int
    save: Path
    slow: float
    hang: float
    jobs: int
    deadline: float
    known_bugs: bool


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang()


def run_one(item: Input, facts: list[TenantFacts], hang: float) -> tuple[str, float, str]:
    """(outcome or finding kind, seconds, detail); the kind starts with '!' for a finding."""
    signal.setitimer(signal.ITIMER_REAL, hang)
    started = time.perf_counter()
    try:
        outcome, detail = process(item, facts), ""
    except MessageRefused as exc:
        outcome, detail = refusal_kind(exc), ""
    except Hang:
        outcome, detail = f"!hang (over {hang:g} s)", traceback.format_exc()
    except MemoryError:
        outcome, detail = "!MemoryError", traceback.format_exc()
    except StorageTrouble as exc:
        outcome, detail = "!unstorable: " + re.sub(r"\[\d+\]", "[…]", str(exc).split(";")[0]), \
            str(exc)
    except Exception as exc:
        outcome, detail = f"!{type(exc).__name__} at {_where(exc)}", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return outcome, time.perf_counter() - started, detail


def save(config: Config, item: Input, finding: Finding) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "_", finding.kind).strip("_")[:60]
    stem = f"{name}-{finding.seed}-{finding.iteration}"
    eml = config.save / f"{stem}.eml"
    eml.write_bytes(item.raw)
    (config.save / f"{stem}.txt").write_text(
        f"{finding.kind}\nseed {finding.seed} iteration {finding.iteration}: "
        f"{' -> '.join(item.recipe)}\nenvelope sender {item.envelope!r}\nlimits {item.limits}\n"
        f"{finding.seconds:.3f} s, {finding.size} bytes\n\n"
        f"reproduce: .venv/bin/python bench/fuzz.py --seed {finding.seed} "
        f"--iteration {finding.iteration}\n"
        f"       or: .venv/bin/python bench/fuzz.py --replay {eml}\n\n"
        f"{finding.detail}\n", encoding="utf-8")
    return str(eml)


def hotspot(item: Input, facts: list[TenantFacts]) -> tuple[str, str]:
    """Where a slow input spends its time: (the innermost function of crm_mailer that holds
    most of it, the function with the most time of its own)."""
    profile = cProfile.Profile()
    with contextlib.suppress(Exception):
        profile.runcall(process, item, facts)
    entries: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in entries.values())
    ours = [(entry[3], key) for key, entry in entries.items()
            if "crm_mailer" in key[0] and key[2] not in ("__call__", "process")
            and entry[3] >= total / 2]
    (filename, _, function) = min(ours)[1] if ours else ("?", 0, "?")
    (hot_file, hot_line, hot_function), _ = max(entries.items(), key=lambda entry: entry[1][2])
    hot = f"{Path(hot_file).name}:{hot_line} {hot_function}" if hot_line else hot_function
    return f"{Path(filename).name} {function}", hot


def warm_up(facts: list[TenantFacts], corpus: list[bytes]) -> None:
    """Load what is loaded once per process (the Public Suffix List, codecs), untimed."""
    for raw in corpus[:5]:
        with contextlib.suppress(Exception):
            process(Input(raw, "alice@xyz.de", DEFAULT_LIMITS, ()), facts)


def worker(config: Config, job: int) -> Stats:
    """Iterations job, job + jobs, ... until the deadline."""
    corpus, facts = load_corpus(config.known_bugs), tenant_facts()
    signal.signal(signal.SIGALRM, _on_alarm)
    warm_up(facts, corpus)
    stats = Stats()
    iteration = job
    while time.monotonic() < config.deadline:
        item = make_input(config.seed, iteration, corpus)
        outcome, seconds, detail = run_one(item, facts, config.hang)
        if seconds > config.slow and not outcome.startswith("!"):
            gc.collect()  # the second run decides: a pause of the collector is no finding
            outcome, again, detail = run_one(item, facts, config.hang)
            seconds = min(seconds, again)
            if seconds > config.slow and not outcome.startswith("!"):
                where, hot = hotspot(item, facts)
                detail = f"outcome {outcome}; most time of its own in {hot}"
                outcome = f"!slow (over {config.slow * 1000:g} ms) in {where}"
        stats.tried += 1
        stats.slowest = sorted([*stats.slowest, (seconds, iteration, len(item.raw))],
                               reverse=True)[:5]
        if outcome.startswith("!"):
            kind = outcome[1:]
            stats.counts[kind] += 1
            if stats.counts[kind] <= SAVED_PER_KIND:
                finding = Finding(kind, config.seed, iteration, seconds, len(item.raw), detail)
                finding.saved = save(config, item, finding)
                stats.findings.append(finding)
        else:
            stats.outcomes[outcome] += 1
        iteration += config.jobs
    return stats


def _worker_entry(args: tuple[Config, int]) -> Stats:
    return worker(*args)


def limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        soft = megabytes * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def report(stats: Stats, config: Config, seconds: float) -> None:
    print(f"seed {config.seed}, {seconds:.0f} s, {config.jobs} job(s)"
          f"{', known bugs in the corpus' if config.known_bugs else ''}; inputs saved in "
          f"{config.save}")
    print(f"messages tried: {stats.tried} ({stats.tried / max(seconds, 1e-9):.0f}/s)")
    print("outcomes:")
    for outcome, count in stats.outcomes.most_common():
        print(f"  {count:8d}  {outcome}")
    print("slowest:")
    for took, iteration, size in stats.slowest:
        print(f"  {took * 1000:8.1f} ms  iteration {iteration}  ({size:,} bytes)")
    if not stats.counts:
        print("findings: none")
        return
    print(f"findings: {sum(stats.counts.values())} inputs of {len(stats.counts)} kinds")
    for kind, count in stats.counts.most_common():
        print(f"  {count:6d}  {kind}")
        for finding in [f for f in stats.findings if f.kind == kind][:2]:
            print(f"          --seed {finding.seed} --iteration {finding.iteration} "
                  f"({finding.size:,} bytes, {finding.seconds * 1000:.0f} ms) {finding.saved}")


def detail(item: Input, facts: list[TenantFacts], hang: float) -> int:
    """Process one input and say everything about it; 1 for a finding."""
    signal.signal(signal.SIGALRM, _on_alarm)
    outcome, seconds, text = run_one(item, facts, hang)
    print(f"recipe: {' -> '.join(item.recipe)}\nenvelope sender: {item.envelope!r}\n"
          f"limits: {item.limits}\nsize: {len(item.raw):,} bytes\ntook: {seconds * 1000:.1f} ms\n"
          f"outcome: {outcome}")
    if text:
        print(text)
    return 1 if outcome.startswith("!") else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Every option also reads CRM_MAILER_FUZZ_<OPTION> (e.g. "
               "CRM_MAILER_FUZZ_SECONDS=300).")
    parser.add_argument("--seconds", type=float, default=float(env("SECONDS", "60")),
                        help="how long to fuzz (default 60; env CRM_MAILER_FUZZ_SECONDS)")
    parser.add_argument("--seed", type=int, default=int(env("SEED", "0")) or None,
                        help="seed; iteration I of seed S is always the same input "
                             "(default: from the clock; env CRM_MAILER_FUZZ_SEED)")
    parser.add_argument("--save", type=Path, default=env("SAVE", "") or None,
                        help="folder for the inputs of findings (default: a new temporary "
                             "folder; env CRM_MAILER_FUZZ_SAVE)")
    parser.add_argument("--slow-ms", type=float, default=float(env("SLOW_MS", "100")),
                        help="a message taking longer is a finding (default 100; env "
                             "CRM_MAILER_FUZZ_SLOW_MS)")
    parser.add_argument("--hang-seconds", type=float, default=float(env("HANG_SECONDS", "10")),
                        help="processing is stopped after this (default 10; env "
                             "CRM_MAILER_FUZZ_HANG_SECONDS)")
    parser.add_argument("--max-memory-mb", type=int, default=int(env("MAX_MEMORY_MB", "2048")),
                        help="address-space limit per process, 0 for none (default 2048; "
                             "env CRM_MAILER_FUZZ_MAX_MEMORY_MB)")
    parser.add_argument("--jobs", type=int, default=int(env("JOBS", "1")),
                        help="processes fuzzing at once (default 1; env CRM_MAILER_FUZZ_JOBS)")
    parser.add_argument("--known-bugs", action="store_true",
                        default=env("KNOWN_BUGS", "") not in ("", "0"),
                        help="keep the hostile cases marked xfail in the corpus (default: left "
                             "out; env CRM_MAILER_FUZZ_KNOWN_BUGS=1)")
    parser.add_argument("--iteration", type=int, default=None,
                        help="process only this iteration of --seed and show it in detail")
    parser.add_argument("--replay", type=Path, default=None,
                        help="process one saved message (as sent by alice@xyz.de, default "
                             "limits) and show it in detail")
    args = parser.parse_args(argv)
    limit_memory(args.max_memory_mb)
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000_007

    if args.replay is not None:
        item = Input(args.replay.read_bytes(), "alice@xyz.de", DEFAULT_LIMITS, ("replay",))
        return detail(item, tenant_facts(), args.hang_seconds)
    if args.iteration is not None:
        item = make_input(seed, args.iteration, load_corpus(args.known_bugs))
        return detail(item, tenant_facts(), args.hang_seconds)

    save_dir = args.save or Path(tempfile.mkdtemp(prefix="crm-mailer-fuzz-"))
    save_dir.mkdir(parents=True, exist_ok=True)
    jobs = max(1, args.jobs)
    config = Config(seed, save_dir, args.slow_ms / 1000, args.hang_seconds, jobs,
                    time.monotonic() + args.seconds, args.known_bugs)
    started = time.monotonic()
    if jobs == 1:
        stats = worker(config, 0)
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            stats = Stats()
            for part in pool.map(_worker_entry, [(config, job) for job in range(jobs)]):
                stats.merge(part)
    report(stats, config, time.monotonic() - started)
    return 1 if stats.counts else 0


if __name__ == "__main__":
    sys.exit(main())
