"""Configuration: one TOML file, every key overridable by `CRM_MAILER_<KEY>`, loaded once."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_mailer.errors import ConfigError

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
    local_part: str = "crm"
    max_message_size: int = 33_554_432
    max_line_length: int = 1_000_000
    hostname: str = ""
    log_level: str = "info"
    log_format: str = "auto"
    shutdown_timeout: float = 30.0
    pending_max_age_days: int = 30

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
}


_INT_RANGES: dict[str, tuple[int, int]] = {
    "listen_port": (0, 65535),
    "max_message_size": (1024, 2**31 - 1),
    "max_line_length": (1001, 2**31 - 1),
    "pending_max_age_days": (1, 36500),
}


def _coerce(key: str, raw: Any, type_name: str, from_env: bool) -> Any:
    """Convert one TOML or environment value to the field's type, or name the key that is wrong."""
    where = f"{ENV_PREFIX}{key.upper()}" if from_env else f"config key '{key}'"
    try:
        if type_name == "int":
            if isinstance(raw, bool) or not (from_env or isinstance(raw, int)):
                raise ValueError
            number = int(raw)
            low, high = _INT_RANGES[key]
            if not low <= number <= high:
                raise ConfigError(f"{where}: must be between {low} and {high}, not {raw!r}")
            return number
        if type_name == "float":
            if isinstance(raw, bool) or not (from_env or isinstance(raw, int | float)):
                raise ValueError
            seconds = float(raw)
            if not seconds >= 0:
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
    return Settings(**values)
