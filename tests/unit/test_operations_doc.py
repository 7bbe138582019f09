"""docs/operations.md stays true: its configuration loads, its paths are the units' paths,
its Postfix snippets are Postfix's, and the tests it cites exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from crm_mailer.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()
POSTCONF = shutil.which("postconf", path="/usr/sbin:/usr/bin")
POSTMAP = shutil.which("postmap", path="/usr/sbin:/usr/bin")


def blocks(language: str) -> list[str]:
    """The fenced blocks of `language` ("" for those without one), unindented."""
    found: list[str] = []
    opened: tuple[str, str] | None = None  # (indent, language) of the block being read
    lines: list[str] = []
    for line in DOC.splitlines():
        fence = re.fullmatch(r"( *)```(\w*)", line)
        if opened is None and fence:
            opened, lines = (fence.group(1), fence.group(2)), []
        elif opened is not None and line == f"{opened[0]}```":
            if opened[1] == language:
                found.append("\n".join(text[len(opened[0]):] for text in lines))
            opened = None
        elif opened is not None:
            lines.append(line)
    return found


def test_the_production_config_is_valid(tmp_path: Path) -> None:
    (config,) = blocks("toml")
    path = tmp_path / "crm-mailer.toml"
    path.write_text(config)
    settings = load_settings(path, environ={})  # unknown keys or bad values raise
    assert settings.listen_port == 25
    assert settings.metrics_listen == "127.0.0.1:9125"


def test_the_install_paths_are_the_units_paths() -> None:
    for unit in ("crm-mailer.service", "crm-mailer-expire.service"):
        text = (ROOT / "systemd" / unit).read_text()
        executable = re.search(r"^ExecStart=(\S+)", text, re.M)
        assert executable and executable.group(1) == "/opt/crm-mailer/.venv/bin/crm-mailer"
        assert "CRM_MAILER_CONFIG=/etc/crm-mailer/crm-mailer.toml" in text
        assert "EnvironmentFile=-/etc/crm-mailer/environment" in text
        assert re.search(r"^User=crm-mailer$", text, re.M)
    assert "python3 -m venv /opt/crm-mailer/.venv" in DOC
    assert "/etc/crm-mailer/crm-mailer.toml" in DOC
    assert "/etc/crm-mailer/environment" in DOC
    assert "useradd --system --user-group" in DOC and "crm-mailer\n" in DOC
    for unit in ("crm-mailer.service", "crm-mailer-expire.service", "crm-mailer-expire.timer"):
        assert f"/opt/crm-mailer/systemd/{unit}" in DOC


def test_the_cited_tests_exist() -> None:
    for cited in re.findall(r"`(tests/\S+\.py)`", DOC):
        assert (ROOT / cited).is_file(), cited
    scale_out = (ROOT / "tests/acceptance/test_scale_out.py").read_text()
    assert "MESSAGES = 20" in scale_out and re.search(r"twenty\s+times", DOC)


@pytest.mark.skipif(POSTCONF is None, reason="postfix is not installed (scripts/test "
                                             "installs it when run as root)")
def test_every_postfix_parameter_named_is_known_to_postfix() -> None:
    assert POSTCONF is not None
    # Every parameter the Postfix part sets (`name = ...` in a block or in the text) or names.
    postfix = DOC[DOC.index("**Postfix.**"):DOC.index("**Exim.**")]
    names = set(re.findall(r"(?:^|`)([a-z]+(?:_[a-z]+)+)(?= =|`)", postfix, re.M))
    names.add("maximal_queue_lifetime")  # cited under upgrades
    assert "maximal_queue_lifetime" in DOC
    assert {"transport_maps", "smtp_tls_policy_maps", "sender_bcc_maps", "recipient_bcc_maps",
            "always_bcc", "maximal_queue_lifetime"} <= names
    result = subprocess.run([POSTCONF, "-d", *sorted(names)], capture_output=True, text=True,
                            check=False)
    assert "unknown parameter" not in result.stderr, result.stderr


@pytest.mark.skipif(POSTMAP is None, reason="postfix is not installed")
def test_the_transport_map_routes_crm_to_the_daemon(tmp_path: Path) -> None:
    assert POSTMAP is not None
    transport = next(b for b in blocks("") if b.startswith("# /etc/postfix/transport"))
    table = tmp_path / "transport"
    table.write_text(transport + "\n")
    result = subprocess.run([POSTMAP, "-q", "crm@crm.xyz.de", f"texthash:{table}"],
                            capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "smtp:[crm-mailer.internal]:2525", result.stderr
