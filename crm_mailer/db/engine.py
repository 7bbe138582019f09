"""Engines and sessions for PostgreSQL (asyncpg) and the embedded SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from crm_mailer.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY_OPTION = "crm_mailer_read_only"
# One writer at a time per SQLite database in this process, waiting in FIFO order on the
# event loop instead of in SQLite's busy handler (which sleeps up to 100 ms per try).
_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = \
    weakref.WeakKeyDictionary()


def normalize_database_url(url: str) -> str:
    """Pick the async driver for plain `postgresql://` and `sqlite://` URLs."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("config key 'database_url': not a database URL") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise ConfigError(
        f"config key 'database_url': backend {backend!r} is not supported (postgresql or sqlite)"
    )


def create_engine(url: str, *, create_directory: bool = False, **kwargs: Any) -> AsyncEngine:
    """An engine for the URL; SQLite gets WAL, foreign keys and write-locking transactions.

    `create_directory`: make the SQLite file's directory (the embedded default's state
    directory). A configured path whose directory is missing is a configuration error:
    most likely a typo, and a database made there would start empty.
    """
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            directory = Path(database).expanduser().parent
            if create_directory:
                directory.mkdir(parents=True, exist_ok=True)
            elif not directory.is_dir():
                raise ConfigError(f"config key 'database_url': the directory {str(directory)!r} "
                                  "of the SQLite database does not exist")
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_timeout", 10)
    # A dead server must surface as an error the SMTP edge turns into 451, not as a hang.
    kwargs.setdefault("connect_args", {"timeout": 5, "command_timeout": 30})
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine.sync_engine.pool, "checkout", _discard_closed)
    return engine


def _discard_closed(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Hand out no pooled connection the server has closed (a restart, a terminated
    backend): the pool then opens a new one. asyncpg notices the close while the connection
    sits idle, so this costs no round trip, where pool_pre_ping costs one per transaction;
    a connection cut without a close fails its first statement instead (451, retried)."""
    if record.driver_connection.is_closed():
        raise exc.DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so we can BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads, then writes, fails at once with SQLITE_BUSY
        # when another process wrote meanwhile; IMMEDIATE takes the write lock up front.
        # Read-only sessions need no lock at all (WAL readers never block).
        if connection.get_execution_options().get(_READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (we read them to build replies)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _bind(sessions: async_sessionmaker[AsyncSession]) -> Engine | None:
    bind = sessions.kw.get("bind")
    return bind.sync_engine if isinstance(bind, AsyncEngine) else None


@contextlib.asynccontextmanager
async def reading(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for reads only: on SQLite it takes no write lock; on PostgreSQL it runs
    without BEGIN and ROLLBACK (two round trips less). Under PostgreSQL's READ COMMITTED
    every statement sees its own snapshot inside a transaction too, so reads see nothing
    different."""
    options: dict[str, Any] = {_READ_ONLY_OPTION: True}
    engine = _bind(sessions)
    if engine is not None and engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    async with sessions() as session:
        await session.connection(execution_options=options)
        yield session


@contextlib.asynccontextmanager
async def writing(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that commits on leaving, rolls back on an exception."""
    engine = _bind(sessions)
    lock: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
    if engine is not None and engine.dialect.name == "sqlite":
        lock = _SQLITE_WRITE_LOCKS.setdefault(engine, asyncio.Lock())
    async with lock, sessions() as session, session.begin():
        yield session
