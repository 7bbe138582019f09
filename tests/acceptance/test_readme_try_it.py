"""The README's "Try it" block, pasted into bash on a fresh copy of the checkout, works: it
installs its own .venv, serves, imports, sends, lists the filed mail and stops the daemon.

Only the port is changed (2525 may be taken on a test machine); the copy's commands,
scripts and waiting are the README's own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from tests.acceptance.test_cli import ROOT, cli_env
from tests.pgcluster import free_port

IGNORED = shutil.ignore_patterns(".git", ".venv", "mutants", "__pycache__", "*.egg-info",
                                 ".mypy_cache", ".ruff_cache", ".pytest_cache")


def try_it_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Try it\n"):]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "no sh block in the README's Try it section"
    return found.group(1)


def test_the_readme_try_it_block_works_when_pasted(tmp_path: Path) -> None:
    checkout = tmp_path / "crm_mailer"
    shutil.copytree(ROOT, checkout, ignore=IGNORED)
    port = str(free_port())
    block = try_it_block()
    assert "2525" in block
    env = cli_env(tmp_path, CRM_MAILER_LISTEN_PORT=port)
    try:
        result = subprocess.run(["bash", "-e", "-c", block.replace("2525", port)],
                                cwd=checkout, env=env, capture_output=True, text=True,
                                timeout=600, check=False)
    finally:
        pid_file = checkout / ".venv" / "crm-mailer.pid"
        if pid_file.exists():  # the block stops it; a failed run may not have
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"crm-mailer is ready on 127.0.0.1:{port}; next: ")
               for line in lines), result.stdout
    [row] = [line.split() for line in lines if "XYZ Lead 11111" in line]
    assert row[2:7] == ["outbound", "alice@xyz.de", "acme", "bob@acme.com", "11111"], row
