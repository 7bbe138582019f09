"""Which database failures mean "storage unavailable right now" and which do not.

Only the first may be answered with 451: a relay retries a 4xx for days, so a failure
that a retry cannot fix (a value the database refuses, a bug in a query) must not be one.
SQLAlchemy wraps every asyncpg error that it has no class for in a plain DBAPIError, so
the class alone does not tell; PostgreSQL's SQLSTATE does (appendix A of its manual).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# What to catch around database work; `unavailable` then says which it is.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError, PoolTimeoutError, OSError,
                                                     TimeoutError)

# A server that is away, overloaded, shutting down or failing: connection exception (08),
# transaction rollback (40: serialization failure, deadlock), insufficient resources (53),
# operator intervention (57: shutdown, cannot connect now, statement timeout), system
# error (58), internal error (XX).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
_TRANSIENT_STATES = frozenset({"55P03", "55006"})  # lock not available, object in use


# SQLite's result codes of a file that is busy, locked, unreadable or full (its docs,
# "Result and Error Codes"); SQLITE_ERROR (1) is a statement's fault, e.g. no such table.
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})  # BUSY LOCKED NOMEM READONLY
#                                                             IOERR FULL CANTOPEN PROTOCOL


def unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot serve now and a retry later may work."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    if isinstance(code, int):  # SQLite names every failure OperationalError: its code tells
        return code & 0xFF in _SQLITE_TRANSIENT
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError, OSError,
                        TimeoutError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    return False


def changed_meanwhile(exc: BaseException) -> bool:
    """True when a row the transaction relied on was deleted by another transaction that
    committed first (PostgreSQL's foreign key violation, 23503): done again, the work sees
    the data as it is now. (SQLite serializes writers: it cannot happen there.)"""
    return isinstance(exc, DBAPIError) and \
        str(getattr(exc.orig, "sqlstate", None) or "") == "23503"
