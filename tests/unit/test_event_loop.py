"""`event_loop`: which loop each process runs on, and a clear refusal when it cannot."""

from __future__ import annotations

import sys

import pytest
import uvloop

from crm_mailer.cli import loop_factory
from crm_mailer.errors import ConfigError


def test_auto_and_uvloop_take_uvloop_where_it_is_installed() -> None:
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop


def test_asyncio_leaves_uvloop_out() -> None:
    assert loop_factory("asyncio") is None  # asyncio.Runner's own default loop


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert loop_factory("auto") is None
    with pytest.raises(ConfigError, match=r'^event_loop = "uvloop", but uvloop is not installed$'):
        loop_factory("uvloop")
