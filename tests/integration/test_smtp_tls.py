"""STARTTLS at the SMTP edge: offered, required, reloaded on SIGHUP, never holding a place.

Certificates are made at test time with the openssl command (self-signed, for 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from crm_mailer.errors import ConfigError
from crm_mailer.settings import Settings
from crm_mailer.smtp import replies
from crm_mailer.smtp.server import SmtpServer
from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, wait_for_port
from tests.conftest import SmtpClient
from tests.integration.smtp_clients import StartEdge, edge, sqlite_only
from tests.integration.test_smtp_ingest import history
from tests.pgcluster import free_port

__all__ = ["edge"]  # the fixture


@dataclasses.dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    @property
    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())

    def install(self, live: Certificate) -> None:
        """Copy this certificate and key over the files the server is configured with."""
        shutil.copyfile(self.cert, live.cert)
        shutil.copyfile(self.key, live.key)


def make_certificate(directory: Path, name: str) -> Certificate:
    directory.mkdir(parents=True, exist_ok=True)
    made = Certificate(directory / "cert.pem", directory / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(made.key), "-out", str(made.cert)],
        check=True, capture_output=True, timeout=30)
    return made


@dataclasses.dataclass(frozen=True)
class Certificates:
    first: Certificate
    second: Certificate
    live: Certificate  # the configured paths; starts as a copy of `first`

    def client_context(self) -> ssl.SSLContext:
        """A client that trusts both certificates (and checks the name 127.0.0.1)."""
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=self.first.cert.read_text()
                                      + self.second.cert.read_text())
        return context

    def settings(self) -> dict[str, str]:
        return {"tls_cert_file": str(self.live.cert), "tls_key_file": str(self.live.key)}


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    first = make_certificate(tmp_path / "first", "first.crm-mailer.test")
    second = make_certificate(tmp_path / "second", "second.crm-mailer.test")
    live = Certificate(tmp_path / "live-cert.pem", tmp_path / "live-key.pem")
    first.install(live)
    return Certificates(first, second, live)


def presented(port: int, context: ssl.SSLContext) -> bytes:
    """STARTTLS on a new connection: the certificate the server presented (DER)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        assert client.starttls(context=context)[0] == 220
        assert client.ehlo("client.test")[0] == 250
        certificate = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        assert certificate is not None
        return certificate


async def test_starttls_is_offered_and_mail_is_delivered_over_it(
        edge: StartEdge, certificates: Certificates,
        example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(**certificates.settings())
    context = certificates.client_context()

    def deliver() -> tuple[int, bytes]:
        with smtplib.SMTP(served.host, served.port, timeout=10) as client:
            client.ehlo("client.test")
            assert client.has_extn("starttls")
            client.starttls(context=context)
            client.ehlo("client.test")
            assert not client.has_extn("starttls")  # offered once, before it is in use
            assert not client.has_extn("auth")  # relays deliver by network, not by login
            client.mail("alice@xyz.de")
            client.rcpt("crm@xyz.hq.example")
            return client.data(factories.mail(message_id="<tls@xyz.de>"))

    assert (await asyncio.to_thread(deliver))[0] == 250
    # Not required: a client that does not use it still delivers.
    plain = SmtpClient(served.host, served.port)
    assert (await plain.send(factories.mail(message_id="<plain@xyz.de>"))).code == 250
    assert sorted(e["message_id"] for e in await history(example)) == [
        "plain@xyz.de", "tls@xyz.de"]


@sqlite_only
async def test_require_tls_refuses_mail_before_starttls_with_530_5_7_0(
        edge: StartEdge, certificates: Certificates) -> None:
    served = await edge(require_tls=True, **certificates.settings())
    context = certificates.client_context()

    def session() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(served.host, served.port, timeout=10) as client:
            answers = {"EHLO": client.ehlo("client.test"),
                       "MAIL": client.docmd("MAIL FROM:<alice@xyz.de>"),
                       "RCPT": client.docmd("RCPT TO:<crm@xyz.hq.example>"),
                       "DATA": client.docmd("DATA"),
                       "VRFY": client.docmd("VRFY crm@xyz.hq.example"),
                       "HELP": client.docmd("HELP"),
                       "NOOP": client.noop(),
                       "RSET": client.rset(),
                       "HELO": client.helo("client.test")}
            client.ehlo("client.test")
            client.starttls(context=context)
            client.ehlo("client.test")
            answers["MAIL after STARTTLS"] = client.mail("alice@xyz.de")
            answers["RCPT after STARTTLS"] = client.rcpt("crm@xyz.hq.example")
            answers["DATA after STARTTLS"] = client.data(factories.mail())
            return answers

    answers = await asyncio.to_thread(session)
    refused = f"{answers['MAIL'][0]} {answers['MAIL'][1].decode()}"
    assert refused == replies.S530_STARTTLS_FIRST
    assert {command: code for command, (code, _) in answers.items()} == {
        "EHLO": 250, "MAIL": 530, "RCPT": 530, "DATA": 530, "VRFY": 530, "HELP": 530,
        "NOOP": 250, "RSET": 250, "HELO": 250,
        "MAIL after STARTTLS": 250, "RCPT after STARTTLS": 250, "DATA after STARTTLS": 250}


@sqlite_only
async def test_reload_gives_new_connections_the_new_certificate(
        edge: StartEdge, certificates: Certificates) -> None:
    served = await edge(**certificates.settings())
    context = certificates.client_context()
    assert await asyncio.to_thread(presented, served.port, context) == certificates.first.der

    kept = await asyncio.to_thread(smtplib.SMTP, served.host, served.port, timeout=10)
    try:
        await asyncio.to_thread(kept.ehlo, "client.test")
        await asyncio.to_thread(kept.starttls, context=context)
        certificates.second.install(certificates.live)
        with capture_logs() as logs:
            assert served.server.reload_tls()
        assert [e["event"] for e in logs] == ["tls.reloaded"]
        assert await asyncio.to_thread(presented, served.port, context) == certificates.second.der
        # A session that began before the reload goes on with the certificate it has.
        assert (await asyncio.to_thread(kept.noop))[0] == 250
        assert kept.sock.getpeercert(binary_form=True) == certificates.first.der  # type: ignore[union-attr]
    finally:
        kept.close()


@sqlite_only
async def test_broken_new_certificate_is_logged_and_the_one_in_use_stays(
        edge: StartEdge, certificates: Certificates) -> None:
    served = await edge(**certificates.settings())
    context = certificates.client_context()
    live = certificates.live

    live.cert.write_text("-----BEGIN CERTIFICATE-----\nhalf written")
    shutil.copyfile(certificates.second.key, live.key)
    with capture_logs() as logs:
        assert not served.server.reload_tls()
    [failed] = logs
    assert failed["event"] == "tls.reload_failed" and failed["log_level"] == "error"
    assert await asyncio.to_thread(presented, served.port, context) == certificates.first.der

    shutil.copyfile(certificates.second.cert, live.cert)  # and a key that is not its own
    shutil.copyfile(certificates.first.key, live.key)
    assert not served.server.reload_tls()
    assert await asyncio.to_thread(presented, served.port, context) == certificates.first.der

    certificates.second.install(live)  # fixed: now it takes
    assert served.server.reload_tls()
    assert await asyncio.to_thread(presented, served.port, context) == certificates.second.der


def test_certificate_that_cannot_be_loaded_at_start_is_a_config_error(
        certificates: Certificates, tmp_path: Path) -> None:
    missing = Settings(tls_cert_file=str(tmp_path / "nope.pem"),
                       tls_key_file=str(certificates.first.key))
    with pytest.raises(ConfigError, match=r"tls_cert_file.*No such file"):
        SmtpServer(missing, None)  # type: ignore[arg-type]
    mismatched = Settings(tls_cert_file=str(certificates.first.cert),
                          tls_key_file=str(certificates.second.key))
    with pytest.raises(ConfigError, match="tls_key_file"):
        SmtpServer(mismatched, None)  # type: ignore[arg-type]


@sqlite_only
async def test_stalled_or_failed_tls_handshakes_give_their_place_back(
        edge: StartEdge, certificates: Certificates) -> None:
    served = await edge(command_timeout=0.3, **certificates.settings())

    stalled = await (await served.client()).greeted()  # says STARTTLS, then nothing
    assert (await stalled.command("STARTTLS")).code == 220
    reset = await (await served.client()).greeted()  # says STARTTLS, then drops
    assert (await reset.command("STARTTLS")).code == 220
    garbage = await (await served.client()).greeted()  # says STARTTLS, then no TLS at all
    assert (await garbage.command("STARTTLS")).code == 220
    await served.until_counted(3)
    reset.reset()
    garbage.send(b"EHLO this is not a TLS record\r\n" * 10)
    assert await garbage.closed()
    assert await stalled.closed(within=3)
    await served.until_counted(0)
    assert not served.server.connections
    context = certificates.client_context()
    assert await asyncio.to_thread(presented, served.port, context) == certificates.first.der


def test_sighup_reloads_the_certificate_of_a_running_daemon(
        certificates: Certificates, tmp_path: Path) -> None:
    env = cli_env(tmp_path, CRM_MAILER_TLS_CERT_FILE=str(certificates.live.cert),
                  CRM_MAILER_TLS_KEY_FILE=str(certificates.live.key),
                  CRM_MAILER_LOG_FORMAT="json")
    port = free_port()
    log_path = tmp_path / "serve.log"
    context = certificates.client_context()
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    try:
        wait_for_port(port, process)
        assert presented(port, context) == certificates.first.der

        def hangup_until(event: str) -> None:
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while f'"event": "{event}"' not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)

        certificates.live.cert.write_text("not a certificate")  # a botched renewal first
        hangup_until("tls.reload_failed")
        assert presented(port, context) == certificates.first.der
        certificates.second.install(certificates.live)
        hangup_until("tls.reloaded")
        assert presented(port, context) == certificates.second.der
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=20) == 0
        finally:
            process.kill()
