"""The query lifecycle: the only code that changes a query's state.

``start`` validates, registers, arms the deadline, checks out, binds the cancel, begins, annotates,
runs and settles a write; ``fail`` turns a failure (a Ctrl-C included) into the caller's error;
``finish`` ends a query exactly once: commit or roll back, close the cursor, release the
connection, unregister, log a timeout, end the span. :class:`~floe_compute.result.QueryResult` and
the asyncio face talk to this class, never to the plugin's internals.

The commit rule, in one place (``finish``): a query commits only when it ended normally and its
caller did not abandon it with an exception.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy.sql.elements import TextClause

from floe_compute import prepare
from floe_compute.connections import TRANSACTION_ENDED
from floe_compute.context import QUERY_OPTION, Params, QueryContext, SessionPin, StatementStopped
from floe_compute.errors import ConnectionFailedError, QueryTimeoutError
from floe_compute.hooks import EngineHooks
from floe_compute.masking import bound_texts
from floe_compute.params import check_params
from floe_compute.retry_decision import Rerun, drop, repeatable, retry_reason
from floe_compute.running import RunningQueries
from floe_compute.sql import reads_only
from floe_compute.telemetry import Telemetry
from floe_compute.timeouts import QueryHandle, QueryState, watchdog
from floe_compute.translate import interrupted, query_error

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, CursorResult, Engine
    from sqlalchemy.engine.interfaces import DBAPICursor, ExecutionContext
    from sqlalchemy.sql.base import Executable

__all__ = ["QueryLifecycle", "Started"]

log = logging.getLogger("floe_compute")


class Started(NamedTuple):
    """A query that reached the engine: what its result reads from."""

    context: QueryContext
    connection: Connection
    cursor: CursorResult[Any]
    batch_size: int | None
    writes: bool
    """Whether the statement changed data: it commits only when its result is closed."""


class QueryLifecycle:
    """Starts, fails and finishes the queries of one plugin."""

    def __init__(
        self,
        hooks: EngineHooks,
        running: RunningQueries,
        telemetry: Telemetry,
        *,
        engine: Callable[[], Engine],
        checkout: Callable[[QueryHandle], Connection],
        pool_name: str,
    ) -> None:
        self.hooks = hooks
        self.running = running
        self.telemetry = telemetry
        self._engine = engine
        self._checkout = checkout
        self._pool_name = pool_name

    # -- start -----------------------------------------------------------------------------

    def start(
        self,
        sql: str | Executable,
        params: Params | None,
        *,
        timeout: float | None,
        batch_size: int | None,
        query_id: str | None,
        tags: Mapping[str, str] | None,
        arrow: bool,
        session: SessionPin | None = None,
    ) -> Started:
        """Run one statement on a pooled connection (or the session's), up to its first row."""
        context, statement, size = self._register(sql, params, timeout, batch_size, query_id, tags, session)
        context.arrow = bool(arrow)
        connection = self._acquire(context, statement, params)
        context.connection = connection
        context.dbapi_connection = connection.connection.dbapi_connection
        context.handle.bind(partial(self.hooks.cancel, context))
        # the context is passed to a rerun, not held by it: a cycle would outlive every query
        run = partial(self._run, statement=statement, params=params, size=size)
        context.rerun = Rerun(sql if isinstance(sql, str) else str(sql), run)
        failed: BaseException | None = None
        try:
            cursor = self._run(connection, statement, params, context, size)
        except BaseException as exc:
            failed = exc  # handled below: the caller's error is not chained to the driver's
        if failed is not None:
            retried = self.retry(context, connection, failed, 0)
            if retried is None:
                raise self.fail(context, connection, failed, 0)
            connection, cursor = retried
        # a write has done its work on the engine: the deadline no longer applies, and the
        # transaction waits for close() (or the end of a `with` block) to commit; one stopped
        # just as it finished is rolled back, and its caller hears of it
        writes = not (cursor.returns_rows and reads_only(context.operation))
        if writes and context.handle.settle() is not QueryState.DONE:
            raise self.fail(context, connection, None, 0)
        return Started(context, connection, cursor, size, writes)

    def _register(
        self,
        sql: str | Executable,
        params: Params | None,
        timeout: float | None,
        batch_size: int | None,
        query_id: str | None,
        tags: Mapping[str, str] | None,
        session: SessionPin | None,
    ) -> tuple[QueryContext, str | Executable, int | None]:
        """Check the arguments, make the query's context, list it and arm its deadline."""
        hooks = self.hooks
        check_params(sql, params, hooks.sql_dialect)
        self._engine()
        context = prepare.new_context(hooks, sql, timeout, query_id, tags)
        size = None if batch_size is None else prepare.check_batch_size(batch_size)
        statement = prepare.statement(hooks, sql, params)
        if params:
            context.bound_values = bound_texts(params)
        context.session = session
        self.running.add(context)
        context.span = self.telemetry.query_started(context)
        if context.handle.deadline is not None:
            watchdog.watch(context.handle)
        return context, statement, size

    def _acquire(
        self, context: QueryContext, statement: str | Executable, params: Params | None
    ) -> Connection:
        """A connection for a registered query; on failure the query ends unlisted."""
        try:
            if params and isinstance(statement, TextClause):
                prepare.match_placeholders(self.hooks, self._engine().dialect, statement, params, context)
            if context.handle.stopped:
                raise StatementStopped
            if context.session is not None:
                return context.session.connection  # pinned: no checkout
            return self._checkout(context.handle)
        except BaseException as exc:
            failure = self._unlisted(context, exc)
            if failure is exc:
                raise
        raise failure  # not chained to the driver's error

    def _unlisted(self, context: QueryContext, exc: BaseException) -> BaseException:
        """End a query that holds no connection; the exception for its caller."""
        context.handle.finish()
        self.running.remove(context)
        error = self.query_error(exc, context) if context.handle.stopped else exc
        self.telemetry.query_finished(context, error, 0)
        return error

    def _run(
        self,
        connection: Connection,
        statement: str | Executable,
        params: Params | None,
        context: QueryContext,
        size: int | None,
    ) -> CursorResult[Any]:
        token = None if context.span is None else self.telemetry.enter(context)
        try:
            self.hooks.begin_query(connection, context)
            # the statement's own options, not the connection's: a connection holding the
            # query's context would make a reference cycle of every query
            options = {"stream_results": True, "yield_per": size, **self.hooks.query_options(context)}
            options[QUERY_OPTION] = context
            if isinstance(statement, str):  # no parameters: the SQL runs exactly as written
                options["no_parameters"] = True
                return connection.exec_driver_sql(statement, execution_options=options)
            return connection.execute(statement, params or {}, execution_options=options)
        finally:
            if token is not None:
                self.telemetry.leave(token)

    def before_cursor_execute(
        self,
        conn: Connection,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> tuple[str, Any]:
        """The engine's ``before_cursor_execute`` event: the last moment before the driver."""
        query: QueryContext | None = context.execution_options.get(QUERY_OPTION) if context else None
        if query is None or query.connection is not conn:
            return statement, parameters
        query.cursor = cursor
        query.sends_parameters = bool(parameters) or not context.no_parameters  # type: ignore[union-attr]
        if query.handle.stopped:
            raise StatementStopped  # stopped before it reached the engine: it must not start
        return self.hooks.annotate_statement(statement, query), parameters

    # -- retry, fail and finish ------------------------------------------------------------------

    def retry(
        self, context: QueryContext, connection: Connection, exc: BaseException, rows: int
    ) -> tuple[Connection, CursorResult[Any]] | None:
        """Run a read again on a fresh connection, when its connection was lost before it handed
        out a row (see :func:`~floe_compute.retry.retry_reason`); None when it must not be."""
        reason = retry_reason(self.hooks, connection.dialect, context, exc, rows)
        if reason is None:
            return None
        context.retries += 1
        log.debug("query %s: %s; retrying it on a fresh connection", context.query_id, reason)
        self.telemetry.query_retried(context, reason)
        drop(context, connection)
        try:
            fresh = self._checkout(context.handle)
        except BaseException as lost:
            failure = self._unlisted(context, lost)
            if failure is lost:
                raise
            raise failure from None
        context.connection = fresh
        context.dbapi_connection = fresh.connection.dbapi_connection
        failed: BaseException | None = None
        try:
            return fresh, context.rerun.run(fresh, context=context)
        except BaseException as again:
            failed = again
        raise self.fail(context, fresh, failed, 0)

    # -- fail and finish ----------------------------------------------------------------------

    def query_error(self, exc: BaseException | None, context: QueryContext) -> BaseException:
        return query_error(self.hooks, exc, context)

    def fail(
        self, context: QueryContext, connection: Connection, exc: BaseException | None, rows: int
    ) -> BaseException:
        """End a query whose driver call failed; the exception for its caller.

        A Ctrl-C (``KeyboardInterrupt``, also when a driver turned it into its own error) stops the
        query on the engine before the transaction is rolled back (the rollback would otherwise wait
        for the query), and stays a ``KeyboardInterrupt`` for the caller.
        """
        ctrl_c = interrupted(exc)
        if ctrl_c:
            context.handle.cancel()
        error = self.query_error(exc, context)
        self.finish(context, connection, error, rows)
        if isinstance(error, ConnectionFailedError):  # one line, no traceback: the caller has it
            log.warning("query %s failed, its connection is gone: %s", context.query_id, error)
        if not ctrl_c:
            return error
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else KeyboardInterrupt()
        interrupt.__cause__ = error
        return interrupt

    def finish(
        self,
        context: QueryContext,
        connection: Connection,
        error: BaseException | None,
        rows: int,
        *,
        rollback: bool = False,
    ) -> None:
        """End the transaction and give the connection back; called exactly once per query.

        It commits only a query that ended normally and that its caller did not abandon with an
        exception (``rollback``). In a session's open transaction it neither commits nor rolls
        back (the transaction's end does; a failure marks it for rollback), and a session's
        connection stays with the session.
        """
        state = context.handle.finish()
        self.running.remove(context)
        committing = error is None and state is QueryState.DONE and not rollback
        session = context.session
        failure: BaseException | None = None
        try:
            if connection.invalidated:
                pass  # lost with its transaction; a rollback would only check out a new connection
            elif session is not None and session.in_transaction:
                if not committing and session.failed_in_transaction is None:
                    session.failed_in_transaction = context.query_id
            elif committing:
                connection.commit()
                connection.info[TRANSACTION_ENDED] = True
            else:
                connection.rollback()
                connection.info[TRANSACTION_ENDED] = True
        except Exception as exc:
            # a connection that cannot end its transaction is not given to anyone else
            connection.invalidate()
            # a read had nothing to commit: its rows were all read, and that stays true
            if committing and not repeatable(context, self.hooks.sql_dialect):
                failure = error = self.query_error(exc, context)
        finally:
            if context.cursor is not None:
                # after the transaction: a server-side cursor is gone with it (no round trip), and
                # before the connection is anyone else's
                try:  # noqa: SIM105  # suppress() costs three Python calls on every query
                    context.cursor.close()
                except Exception:  # nothing to do about a cursor that cannot close
                    pass
                context.cursor = None
            if session is None:
                connection.close()
        if state is QueryState.TIMED_OUT or isinstance(error, QueryTimeoutError):
            self._log_timeout(context)
        self.telemetry.query_finished(context, error, rows)
        if failure is not None:
            raise failure  # the commit failed: the caller must not believe it happened

    @contextlib.contextmanager
    def fetching(self, context: QueryContext) -> Iterator[None]:
        """Around a fetch: the query's span is the current one while the driver works."""
        token = self.telemetry.enter(context)
        try:
            yield
        finally:
            self.telemetry.leave(token)

    def _log_timeout(self, context: QueryContext) -> None:
        elapsed = context.handle.elapsed
        fields = {
            "event": "query_timeout",
            "engine": self.hooks.name,
            "pool": self._pool_name,
            "query_id": context.query_id,
            "timeout_s": context.timeout,
            "elapsed_s": round(elapsed, 3),
            "statement": context.summary,
            "tags": dict(context.tags),
            "cancelled_on_engine": context.handle.cancel_sent,
        }
        log.warning(
            "query timed out: " + " ".join(f"{k}={v!r}" for k, v in fields.items() if k != "event"),
            extra={"floe": fields},
        )
