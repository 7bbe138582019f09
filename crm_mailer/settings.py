"""Configuration: one TOML file, every key overridable by `CRM_MAILER_<KEY>`, loaded once."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_mailer.errors import ConfigError
from crm_mailer.numbers import decimal_number, is_digits, whole_number

ENV_PREFIX = "CRM_MAILER_"
CONFIG_ENV = "CRM_MAILER_CONFIG"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the embedded database lives: systemd's StateDirectory, else the XDG state home."""
    env = os.environ if environ is None else environ
    if systemd_dir := env.get("STATE_DIRECTORY"):
        return Path(systemd_dir.split(":")[0])
    xdg = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "crm-mailer"


@dataclass(frozen=True, slots=True)
class Settings:
    """The daemon's configuration; see config/crm-mailer.example.toml for every key."""

    database_url: str = ""
    state_dir: Path = field(default_factory=default_state_dir)
    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    workers: int = 1  # SMTP worker processes on the listen port; "auto": one per core
    event_loop: str = "auto"  # auto (uvloop where installed) | uvloop | asyncio
    metrics_listen: str = ""  # HOST:PORT of /metrics, /healthz, /readyz; empty: off
    local_part: str = "crm"
    max_message_size: int = 33_554_432
    max_line_length: int = 1_000_000
    hostname: str = ""
    log_level: str = "info"
    log_format: str = "auto"
    shutdown_timeout: float = 30.0
    pending_max_age_days: int = 30
    # Limits on what one client may send (issue 7): each has a named reply at the edge.
    max_header_size: int = 262_144
    max_headers: int = 1000
    max_addresses_per_header: int = 1000
    max_mime_depth: int = 50
    max_mime_parts: int = 1000
    max_connections: int = 200
    max_connections_per_client: int = 20
    max_concurrent_messages: int = 8
    max_messages_per_client: int = 4
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    processing_timeout: float = 30.0
    # Access: who may connect, and TLS.
    trusted_networks: tuple[str, ...] = ()
    tls_cert_file: str = ""
    tls_key_file: str = ""
    require_tls: bool = False
    # Sender proof: authserv-ids whose Authentication-Results are believed (the tenants' MX).
    trusted_authserv_ids: tuple[str, ...] = ()
    # Matching: domains that never identify a company, in addition to the shipped list.
    free_mail_domains: tuple[str, ...] = ()

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file in the state directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.state_dir / 'crm-mailer.sqlite3'}"

    @property
    def uses_embedded_database(self) -> bool:
        """True when no database_url is configured."""
        return not self.database_url


_CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("auto", "json", "console"),
    "event_loop": ("auto", "uvloop", "asyncio"),
}


INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "listen_port": (0, 65535),
    "workers": (1, 256),
    "max_message_size": (1024, 2**31 - 1),
    "max_line_length": (1001, 2**31 - 1),
    "pending_max_age_days": (1, 36500),
    "max_header_size": (1024, 2**31 - 1),
    "max_headers": (10, 1_000_000),
    "max_addresses_per_header": (1, 1_000_000),
    "max_mime_depth": (1, 1000),
    "max_mime_parts": (1, 1_000_000),
    "max_connections": (1, 1_000_000),
    "max_connections_per_client": (1, 1_000_000),
    "max_concurrent_messages": (1, 10_000),
    "max_messages_per_client": (1, 10_000),
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def auto_workers() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def parse_listen(text: str) -> tuple[str, int]:
    """"HOST:PORT" (an IPv6 host in brackets) -> (host, port); ValueError if it is not."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not is_digits(port) or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def parse_workers(text: str) -> int:
    """A number of workers as `serve --workers` takes it: a whole number, or "auto"."""
    if text.strip().lower() == "auto":
        return auto_workers()
    low, high = INTEGER_RANGES["workers"]
    try:
        number = whole_number(text)
    except ValueError:
        raise ValueError(f"must be a whole number or 'auto', not {text!r}") from None
    if not low <= number <= high:
        raise ValueError(f"must be between {low} and {high}, not {text!r}")
    return number


def _coerce(key: str, raw: Any, type_name: str, from_env: bool) -> Any:
    """Convert one TOML or environment value to the field's type, or name the key that is wrong."""
    where = f"{ENV_PREFIX}{key.upper()}" if from_env else f"config key '{key}'"
    try:
        if key == "workers":  # a number or "auto", as `serve --workers` takes it
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError
            try:
                return parse_workers(str(raw))
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if type_name == "int":
            if isinstance(raw, bool) or not (from_env or isinstance(raw, int)):
                raise ValueError
            number = whole_number(raw) if isinstance(raw, str) else int(raw)
            low, high = INTEGER_RANGES[key]
            if not low <= number <= high:
                raise ConfigError(f"{where}: must be between {low} and {high}, not {raw!r}")
            return number
        if type_name == "bool":
            if isinstance(raw, bool):
                return raw
            if from_env and str(raw).strip().lower() in (*_TRUE, *_FALSE):
                return str(raw).strip().lower() in _TRUE
            raise ValueError
        if type_name == "tuple[str, ...]":
            # TOML: an array of strings; environment: a comma-separated list.
            items = str(raw).split(",") if from_env else raw
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError
            return tuple(item.strip() for item in items if item.strip())
        if type_name == "float":
            if isinstance(raw, bool) or not (from_env or isinstance(raw, int | float)):
                raise ValueError
            seconds = decimal_number(raw) if isinstance(raw, str) else float(raw)
            if not 0 <= seconds < math.inf:  # TOML's inf and nan, and digits past a float
                raise ValueError
            return seconds
        if not isinstance(raw, str):
            raise ValueError
        if type_name == "Path":
            if not raw:
                raise ValueError
            return Path(raw).expanduser()
        text = raw.strip()
        if key in _CHOICES:
            text = text.lower()
            if text not in _CHOICES[key]:
                allowed = ", ".join(_CHOICES[key])
                raise ConfigError(f"{where}: must be one of {allowed}, not {raw!r}")
        if key == "local_part" and (not text or "@" in text or any(c.isspace() for c in text)):
            raise ValueError
        return text
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: expected a valid {type_name}, got {raw!r}") from None


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Load the TOML file (argument, else $CRM_MAILER_CONFIG, else none) and apply env overrides."""
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_ENV) or None
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                document = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        for key, raw in document.items():
            if key not in fields:
                raise ConfigError(f"config key '{key}' is unknown (known: {', '.join(fields)})")
            values[key] = _coerce(key, raw, str(fields[key].type), from_env=False)
    for key, spec in fields.items():
        env_name = f"{ENV_PREFIX}{key.upper()}"
        if env_name in env:
            values[key] = _coerce(key, env[env_name], str(spec.type), from_env=True)
    values.setdefault("state_dir", default_state_dir(env))
    return _checked(Settings(**values))


def _checked(settings: Settings) -> Settings:
    """Checks that span keys or need parsing beyond the type: one line naming the key."""
    for network in settings.trusted_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"config key 'trusted_networks': {network!r} is not a network "
                              "(CIDR, e.g. 192.0.2.0/24)") from None
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("config keys 'tls_cert_file' and 'tls_key_file': set both or neither")
    if settings.require_tls and not settings.tls_cert_file:
        raise ConfigError("config key 'require_tls': needs 'tls_cert_file' and 'tls_key_file'")
    if settings.metrics_listen:
        try:
            parse_listen(settings.metrics_listen)
        except ValueError as exc:
            raise ConfigError(f"config key 'metrics_listen': {exc} (e.g. 127.0.0.1:9125)") \
                from None
    for key in ("command_timeout", "data_timeout", "processing_timeout"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"config key '{key}': must be more than 0 seconds")
    return settings
