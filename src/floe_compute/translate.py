"""Error translation: what the caller of a failed, timed-out or cancelled query is told.

One path for every query error, as SQLAlchemy has one for every DBAPI error: the query's state
(timed out, cancelled) decides first, the engine's :meth:`~floe_compute.hooks.EngineHooks.classify_error`
next, and the message names the engine, the query id and a summary of the statement, never a
bound value or a secret.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from floe_compute.context import QueryContext, StatementStopped
from floe_compute.errors import (
    ComputeError,
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    caused_by,
    driver_message,
)
from floe_compute.hooks import EngineHooks
from floe_compute.timeouts import QueryState

__all__ = ["interrupted", "query_error"]


def query_error(hooks: EngineHooks, exc: BaseException | None, context: QueryContext) -> BaseException:
    """The error the caller sees for a failed, timed-out or cancelled query."""
    state = context.handle.state
    if state is QueryState.RUNNING and (
        exc is None or isinstance(exc, ComputeError) or not isinstance(exc, Exception)
    ):
        return exc if exc is not None else QueryError(f"{hooks.name}: query {context.query_id} failed")
    where = f"{hooks.name}: query {context.query_id} ({context.summary})"
    orig = exc.orig if isinstance(exc, sa_exc.StatementError) and exc.orig else exc
    if isinstance(orig, StatementStopped):
        orig = None
    mapped = hooks.classify_error(orig) if isinstance(orig, Exception) else None
    ids = {"engine": hooks.name, "query_id": context.query_id, "statement": context.summary}
    error: QueryError | ConnectionFailedError
    # the engine's own statement timeout may fire before the watchdog: the same timeout for the caller
    engine_timeout = bool(mapped and issubclass(mapped[0], QueryTimeoutError))
    if state is QueryState.TIMED_OUT or engine_timeout:
        elapsed = context.handle.elapsed
        limit = "the engine's statement timeout" if context.timeout is None else f"{context.timeout:g}s"
        if state is QueryState.TIMED_OUT and (context.handle.cancel_sent or not engine_timeout):
            how = _how(exc, context)
        else:  # the engine's statement timeout stopped it, before the watchdog did
            how = " and was cancelled on the engine (by its own statement timeout)"
        error = QueryTimeoutError(f"{where} timed out after {elapsed:.3f}s (timeout {limit}){how}", **ids)
        error.timeout = context.timeout or 0.0
        error.elapsed = elapsed
    elif state is QueryState.CANCELLED:
        how = _how(exc, context).replace(" and was cancelled on the engine", " (stopped on the engine)")
        error = QueryCancelledError(f"{where} was cancelled{how}", **ids)
    elif isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        message = f"{where}: the connection was lost: {driver_message(exc.orig or exc)}"
        error = ConnectionFailedError(hooks.scrub(message, context), engine=hooks.name)
    else:
        assert orig is not None
        cls: type[ComputeError] = mapped[0] if mapped else QueryError
        detail = mapped[1] if mapped else driver_message(orig)
        if issubclass(cls, QueryError):
            error = cls(hooks.scrub(f"{where} failed: {detail}", context), **ids)
        else:
            error = ConnectionFailedError(hooks.scrub(f"{where}: {detail}", context), engine=hooks.name)
    if isinstance(error, QueryError):
        error.tags = dict(context.tags)
    return caused_by(error, hooks.driver_cause(orig))


def _how(exc: BaseException | None, context: QueryContext) -> str:
    """What happened to a stopped query, without claiming an engine cancel that did not run."""
    if context.connection is None or isinstance(exc, StatementStopped):
        return " before it started on the engine"
    if exc is None:
        return "; its result was discarded"
    if context.handle.cancel_error is not None:
        return "; the cancel request to the engine failed"
    return " and was cancelled on the engine" if context.handle.cancel_sent else ""


def interrupted(exc: BaseException | None) -> bool:
    """A Ctrl-C, as such or as the cause of a driver's error (DuckDB's "Query interrupted")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
