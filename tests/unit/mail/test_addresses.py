"""Domains in IDNA form: the plain-ASCII shortcut gives what the idna library gives."""

from __future__ import annotations

import random

import idna
import pytest

from crm_mailer.mail.addresses import (
    _encode,
    _encode_cached,
    normalize_address,
    normalize_domain,
    strict_domain,
)


def library(domain: str) -> str | None:
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def ours(domain: str) -> str | None:
    try:
        return _encode(domain)
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


EDGES = [
    "acme.com", "ACME.Com", "a.b.c.d.e", "1.2.3.4", "x", "a-b.example", "-ab.example",
    "ab-.example", "ab--cd.example", "xn--bro-hoa.example", "XN--BRO-HOA.example",
    "xn--invalid-.example", "a..b", ".a", "a_b.example", "a b.example", "a" * 63 + ".example",
    "a" * 64 + ".example", ".".join(["a" * 63] * 4)[:253], ".".join(["a" * 63] * 4)[:254],
    "\u212aelvin.example",  # the Kelvin sign lower-cases to ASCII "k": not a plain domain
    "büro.example", "BÜRO.example", "straße.example", "a\u00adb.example", "ａｃｍｅ.com",
]


@pytest.mark.parametrize("domain", EDGES)
def test_edge_cases_agree_with_the_library(domain: str) -> None:
    assert ours(domain) == library(domain)


def test_random_ascii_domains_agree_with_the_library() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ019-_."
    for _ in range(20_000):
        domain = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 20)))
        assert ours(domain) == library(domain), domain


def test_normal_forms() -> None:
    assert normalize_domain(" Büro.Example. ") == "xn--bro-hoa.example"
    assert normalize_domain("not valid..example") == "not valid..example"
    assert normalize_address("Bob@ACME.com") == "bob@acme.com"
    assert strict_domain("ACME.com") == "acme.com"
    with pytest.raises(ValueError, match="not a valid domain name"):
        strict_domain("a..b")


def test_a_long_string_is_not_kept_and_still_answered() -> None:
    kept = _encode_cached.cache_info().currsize
    assert normalize_domain("A" * 1_000_000) == "a" * 1_000_000  # not a domain: lower-cased
    assert _encode_cached.cache_info().currsize == kept
    assert normalize_domain("Kept.Example") == "kept.example"
    assert _encode_cached.cache_info().currsize in (kept, kept + 1)  # unless seen before
