"""Sender policies over a real socket: DKIM with a test key and a resolver the test owns,
trusted and untrusted Authentication-Results, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import AsyncIterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.engine import writing
from crm_mailer.ingest import IngestConfig
from crm_mailer.leads.scope import tenant_scope
from crm_mailer.matching import pipeline
from crm_mailer.reconciliation.reprocess import reprocess
from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_smtp_ingest import history

SELECTOR = b"s2026"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def dns_records(key: rsa.RSAPrivateKey) -> dict[bytes, bytes]:
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return {b"s2026._domainkey.xyz.de": b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)}


def sign(raw: bytes, key: rsa.RSAPrivateKey, domain: bytes = b"xyz.de") -> bytes:
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return dkim.sign(raw, SELECTOR, domain, pem,
                     include_headers=[b"from", b"to", b"subject", b"message-id"]) + raw


@pytest.fixture
async def proving(example: async_sessionmaker[AsyncSession], settings: Settings,
                  dns_records: dict[bytes, bytes]) -> AsyncIterator[SmtpClient]:
    trusting = dataclasses.replace(settings, trusted_authserv_ids=("mx.xyz.de",))
    server = SmtpServer(trusting, example, dns_txt=dns_records.get)
    host, port = await server.start()
    yield SmtpClient(host, port)
    await server.stop(grace=5)


async def test_a_valid_aligned_dkim_signature_proves_the_from(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient,
        key: rsa.RSAPrivateKey) -> None:
    reply = await proving.send(sign(factories.mail(), key), sender="SRS0=x=y@forwarder.example")
    assert reply.code == 250 and "filed" in reply.text, reply
    assert len(await history(example)) == 1


async def test_a_signature_broken_by_a_changed_body_proves_nothing(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient,
        key: rsa.RSAPrivateKey) -> None:
    tampered = sign(factories.mail(), key).replace(b"Hallo Bob", b"Hallo Eve")
    reply = await proving.send(tampered, sender="SRS0=x=y@forwarder.example")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1"), reply
    assert "not proven under policy 'aligned'" in reply.text


async def test_a_signature_of_another_domain_does_not_prove_the_from(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient,
        key: rsa.RSAPrivateKey) -> None:
    # Signed by evil.example, whose key is not even published: either way not aligned.
    reply = await proving.send(sign(factories.mail(), key, b"evil.example"),
                               sender="mallory@evil.example")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1"), reply


async def test_the_dkim_policy_ignores_an_aligned_envelope_but_takes_a_signature(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient,
        key: rsa.RSAPrivateKey) -> None:
    await load_directory(example, factories.directory(sender_policy="dkim"))
    unsigned = await proving.send(factories.mail(), sender="alice@xyz.de")
    assert (unsigned.code, unsigned.text[:5]) == (550, "5.7.1"), unsigned
    assert "policy 'dkim'" in unsigned.text
    signed = await proving.send(sign(factories.mail(), key), sender="alice@xyz.de")
    assert signed.code == 250, signed


async def test_reprocess_proves_the_from_by_the_signature_of_the_stored_bytes(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient,
        key: rsa.RSAPrivateKey, dns_records: dict[bytes, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    await load_directory(example, factories.directory(sender_policy="dkim"))
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", lambda *args: 1 / 0)  # kept as unprocessable
        assert (await proving.send(sign(factories.mail(), key))).code == 250
    async with writing(example) as session:
        report = await reprocess(session, await tenant_scope(session, "xyz"),
                                 IngestConfig(dns_txt=dns_records.get))
    assert report == {"filed": 1}
    [entry] = await history(example)
    assert entry["lead"] == 11111


def with_auth_results(raw: bytes, authserv_id: str, result: str = "pass") -> bytes:
    header = f"Authentication-Results: {authserv_id}; dmarc={result} header.from=xyz.de\r\n"
    return header.encode() + raw


async def test_dmarc_pass_from_a_trusted_authserv_id_proves_the_from(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient) -> None:
    reply = await proving.send(with_auth_results(factories.mail(), "mx.xyz.de"),
                               sender="SRS0=x=y@forwarder.example")
    assert reply.code == 250, reply


@pytest.mark.parametrize("authserv_id, result", [("mx.evil.example", "pass"),
                                                 ("mx.xyz.de", "fail")])
async def test_untrusted_or_failing_authentication_results_prove_nothing(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient, authserv_id: str,
        result: str) -> None:
    reply = await proving.send(with_auth_results(factories.mail(), authserv_id, result),
                               sender="SRS0=x=y@forwarder.example")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1"), reply


async def test_a_signed_message_with_a_monstrous_header_is_not_verified(
        example: async_sessionmaker[AsyncSession], proving: SmtpClient,
        key: rsa.RSAPrivateKey) -> None:
    # dkimpy joins folded lines in quadratic time: past MAX_DKIM_FOLDS it is not asked.
    padded = sign(factories.mail(), key).replace(
        b"Subject:", b"X-Pad: x" + b"\r\n y" * 1500 + b"\r\nSubject:", 1)
    started = time.process_time()  # the server's work, in this process: not stretched by load
    reply = await proving.send(padded, sender="SRS0=x=y@forwarder.example")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1"), reply
    assert time.process_time() - started < 2
