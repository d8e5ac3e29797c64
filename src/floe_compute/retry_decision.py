"""Whether a failed statement may run again, and dropping the attempt that failed.

A statement is run again (once, by default) only when all of these hold: it only reads (one
``SELECT``-like statement whose code names no write, call, lock or sequence); no row of it was
handed out; it is not in a session; the query was not stopped and its deadline has not passed;
and the driver's error says the connection was lost (the dialect's disconnect test) or the engine
says it never ran it (``EngineHooks.never_ran``). Unknown errors are never retried.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from floe_compute.sql import statement_count
from floe_compute.sql_lexer import code_only
from floe_compute.translate import interrupted

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, CursorResult, Dialect

    from floe_compute.context import QueryContext
    from floe_compute.hooks import EngineHooks

__all__ = ["LOST", "Rerun", "drop", "repeatable", "retry_reason", "safe_to_repeat"]

LOST = "the connection was lost"

_READ = re.compile(r"^\s*\(*\s*(?:SELECT|WITH|VALUES|TABLE|SHOW|DESCRIBE|DESC)\b", re.IGNORECASE)
_CHANGES = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|UPSERT|CREATE|DROP|ALTER|TRUNCATE|COPY|CALL|EXEC|EXECUTE"
    r"|GRANT|REVOKE|LOCK|INTO|NEXTVAL|SETVAL|SET|PG_ADVISORY_\w+|DBLINK\w*)\b|\bFOR\s+(?:NO\s+KEY\s+)?"
    r"(?:UPDATE|SHARE|KEY)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Rerun:
    """What running a statement again takes: its SQL (to judge) and the call that runs it, with
    the fresh connection and the query's ``context=``."""

    sql: str
    run: Callable[..., CursorResult[Any]]


def safe_to_repeat(sql: str, dialect: str | None) -> bool:
    """One statement that only reads: running it twice changes nothing. Conservative: a column
    named like a keyword (``update``) makes a read look unsafe, never the other way round."""
    if statement_count(sql, dialect) != 1:
        return False
    code = code_only(sql, dialect)
    return bool(_READ.match(code)) and not _CHANGES.search(code)


def repeatable(context: QueryContext, dialect: str | None) -> bool:
    """Whether the query's statement only reads (:func:`safe_to_repeat`)."""
    rerun: Rerun | None = context.rerun
    return rerun is not None and safe_to_repeat(rerun.sql, dialect)


def retry_reason(
    hooks: EngineHooks, dialect: Dialect, context: QueryContext, exc: BaseException, rows: int
) -> str | None:
    """Why the failed statement may run again on a fresh connection, or None."""
    rerun: Rerun | None = context.rerun
    if rows or rerun is None or context.session is not None:
        return None
    if context.retries >= hooks.config.retry.reads or interrupted(exc) or context.handle.stopped:
        return None
    deadline = context.handle.deadline
    if deadline is not None and time.monotonic() >= deadline:
        return None
    if not repeatable(context, hooks.sql_dialect):
        return None
    if _lost(dialect, context, exc):
        return LOST
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return hooks.never_ran(orig) if isinstance(orig, Exception) else None


def _lost(dialect: Dialect, context: QueryContext, exc: BaseException) -> bool:
    """The dialect's disconnect test, also for an error of a fetch SQLAlchemy did not see."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig or exc
    dbapi: Any = dialect.loaded_dbapi
    if not isinstance(exc, dbapi.Error):
        return False
    with contextlib.suppress(Exception):
        return bool(dialect.is_disconnect(exc, context.dbapi_connection, context.cursor))
    return False


def drop(context: QueryContext, connection: Connection) -> None:
    """Let go of a failed attempt: its cursor and its (lost) connection, quietly."""
    cursor, context.cursor = context.cursor, None
    if cursor is not None:
        with contextlib.suppress(Exception):
            cursor.close()
    with contextlib.suppress(Exception):
        if not connection.invalidated:
            connection.invalidate()
    with contextlib.suppress(Exception):
        connection.close()
