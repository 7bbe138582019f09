"""STARTTLS: the server certificate and key, loaded at start and reloaded on SIGHUP.

Each new connection takes the context current when it connects, so a reload affects new
connections only. A reload that fails (a half-written or mismatched file) is logged and the
certificate in use stays.
"""

from __future__ import annotations

import ssl

import structlog

from crm_mailer.errors import ConfigError

log = structlog.get_logger("crm_mailer.smtp")


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key,
    # blocking the daemon; a key for an unattended server must not need a password.
    raise ValueError("the key is encrypted; crm_mailer needs an unencrypted key file")


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later) with the PEM certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file, password=_no_password)
    return context


class ServerCertificate:
    """The certificate (tls_cert_file) and key (tls_key_file) STARTTLS presents."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        try:
            self.context = server_context(cert_file, key_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"config keys 'tls_cert_file' and 'tls_key_file': cannot load "
                              f"{cert_file!r} and {key_file!r}: {_reason(exc)}") from None

    def reload(self) -> bool:
        """Read both files again; on failure log why and keep the certificate in use."""
        try:
            context = server_context(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("tls.reload_failed", cert_file=self.cert_file, key_file=self.key_file,
                      error=_reason(exc), kept="the certificate in use")
            return False
        self.context = context
        log.info("tls.reloaded", cert_file=self.cert_file, key_file=self.key_file)
        return True


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
