"""ComputePlugin: one SQLAlchemy engine, and everything the platform needs around it.

The core is written once here: the engine and pool lifecycle, checkouts, execution, result
lifecycle, timeouts, error translation, health and statistics. An engine module only overrides the
hooks at the bottom of the class (SQLMesh's engine adapters and Superset's engine specs have the same
shape).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Sequence, create_engine, event, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import PoolResetState, QueuePool
from sqlalchemy.sql.elements import TextClause

from floe_compute.config import ComputeConfig, check_timeout, display_url
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    PoolExhaustedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    driver_cause,
    redact,
)
from floe_compute.health import HealthState, HealthStatus
from floe_compute.masking import bound_texts as _bound_texts
from floe_compute.masking import mask_values as _mask_values
from floe_compute.params import check_params
from floe_compute.pool import PoolStats, PoolTracker
from floe_compute.result import QueryResult
from floe_compute.sql import bindable_text, operation_name, reads_only, statement_count, summarize
from floe_compute.telemetry import Telemetry
from floe_compute.timeouts import QueryHandle, QueryState, watchdog

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from types import TracebackType

    import pyarrow as pa
    from sqlalchemy.engine.interfaces import DBAPICursor, ExecutionContext
    from sqlalchemy.sql.base import Executable

    from floe_compute.aio import AsyncExecution
    from floe_compute.health import HealthMonitor

__all__ = ["ComputePlugin", "QueryContext", "RunningQuery"]

log = logging.getLogger("floe_compute")

Params = Mapping[str, Any]


MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
_TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_QUERY_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


@dataclass(slots=True)
class QueryContext:
    """What the core knows about one query, from its start to the release of its connection.

    Engine hooks receive it: ``begin_query`` and ``annotate_statement`` read the timeout and tags,
    and record in ``engine_state`` what their ``cancel`` needs (a job id, an operation handle).
    """

    query_id: str
    summary: str
    operation: str
    timeout: float | None
    max_rows: int | None
    tags: Mapping[str, str] = field(default_factory=dict)
    handle: QueryHandle = field(init=False)
    span: Any = None
    started: float = field(default_factory=time.perf_counter)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    connection: Connection | None = None
    """The pooled SQLAlchemy connection, once checked out."""
    dbapi_connection: Any = None
    """The DBAPI connection the query runs on, once checked out."""
    cursor: Any = None
    """The DBAPI cursor of the statement, set just before the driver is called."""
    engine_state: dict[str, Any] = field(default_factory=dict)
    sends_parameters: bool = True
    """Whether the driver gets parameters with the statement (a ``%``-style driver then reads
    ``%`` in the text as a placeholder), known when the statement is sent."""
    bound_values: tuple[str, ...] = ()
    """Text forms of the bound parameter values, masked in the library's messages."""
    arrow: bool = False
    """The caller will read Arrow batches (``execute(..., arrow=True)``): an engine whose Arrow
    path must be chosen before the statement runs (PostgreSQL's COPY) starts that path."""


@dataclass(frozen=True, slots=True)
class RunningQuery:
    """A query that runs now, as :meth:`ComputePlugin.running_queries` shows it."""

    query_id: str
    summary: str
    tags: Mapping[str, str]
    started_at: datetime
    elapsed_s: float
    timeout: float | None


class _Stopped(Exception):
    """Raised instead of sending a statement whose query was cancelled or timed out before it
    reached the engine; the caller sees the matching :class:`QueryError`."""


class _DeadlinePool(QueuePool):
    """A ``QueuePool`` whose checkout waits at most until a per-thread time (the plugin sets it), so
    a query's deadline or cancel can end its wait without changing the pool's ``pool.timeout``."""

    _until = threading.local()

    @property
    def _timeout(self) -> float:
        until: float | None = getattr(self._until, "value", None)
        if until is None:
            return self._pool_timeout
        return max(0.0, until - time.monotonic())

    @_timeout.setter
    def _timeout(self, value: float) -> None:
        self._pool_timeout = value


CHECKOUT_SLICE_S = 0.05
"""How often a query waiting for a connection looks whether it was cancelled meanwhile."""


class ComputePlugin(abc.ABC):
    """One engine behind the common interface. Subclasses live in ``floe_compute.engines``."""

    name: ClassVar[str]
    """The plugin's name, as ``list_plugins()`` shows it."""
    schemes: ClassVar[tuple[str, ...]]
    """URL backends it claims (``postgresql`` matches ``postgresql+psycopg://``)."""
    config_class: ClassVar[type[ComputeConfig]] = ComputeConfig
    db_system: ClassVar[str]
    """The OpenTelemetry ``db.system.name``."""
    sql_dialect: ClassVar[str | None] = None
    """sqlglot's name for the engine's SQL (quoting, escapes, placeholders); None reads generic SQL."""
    default_pre_ping: ClassVar[bool] = True
    default_batch_size: ClassVar[int] = 10_000

    _REQUIRED: ClassVar[tuple[str, ...]] = ("name", "schemes", "db_system")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None) and not cls.__dict__.get("_abstract"):
            missing = [attr for attr in cls._REQUIRED if not hasattr(cls, attr)]
            if missing:
                raise TypeError(f"{cls.__name__} must declare {', '.join(missing)}")

    def __init__(self, config: ComputeConfig) -> None:
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self._config = config
        self._engine: Engine | None = None
        self._tracker: PoolTracker | None = None
        self._lock = threading.RLock()
        self._telemetry = Telemetry(self, enabled=config.telemetry)
        self._monitor: HealthMonitor | None = None
        self._running: dict[str, QueryContext] = {}
        self._preempted: set[str] = set()
        self._discarded = False
        self._executors: dict[str, ThreadPoolExecutor] = {}

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def config(self) -> ComputeConfig:
        return self._config

    @property
    def pool_name(self) -> str:
        """The pool's name in metrics and logs: the target name, else the URL without password."""
        return self._config.name or display_url(self._config.url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine itself, for Core, ``inspect()`` or ``pandas.read_sql``."""
        return self._ensure_engine()

    @property
    def monitor(self) -> HealthMonitor | None:
        """The background health monitor, when ``health.monitor_interval`` is set and connected."""
        return self._monitor

    @property
    def connected(self) -> bool:
        return self._engine is not None

    def connect(self) -> ComputePlugin:
        """Create the engine and open the first connection, so a bad target fails here.

        After :meth:`disconnect` it starts afresh, also where the data did not survive (an
        in-memory database).
        """
        self._discarded = False
        self._ensure_engine()
        return self

    def _ensure_engine(self) -> Engine:
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                if self._discarded:
                    raise ConnectionFailedError(
                        f"{self.name}: {self.pool_name} was disconnected and its data did not survive "
                        f"({self.survives_disconnect_reason}); call connect() to start a new, empty one",
                        engine=self.name,
                    )
                self._engine = self._create_engine()
            return self._engine

    def _create_engine(self) -> Engine:
        pool = self._config.pool
        pre_ping = self.default_pre_ping if pool.pre_ping is None else pool.pre_ping
        options: dict[str, Any] = {
            "poolclass": _DeadlinePool,
            "pool_size": pool.size,
            "max_overflow": pool.max_overflow,
            "pool_timeout": pool.timeout,
            "pool_recycle": pool.recycle or -1,
            "pool_pre_ping": pre_ping,
            # _on_pool_reset rolls back, unless execute() already ended the transaction
            "pool_reset_on_return": None,
            # drivers' messages must never carry parameter values into logs or errors
            "hide_parameters": True,
        }
        try:
            options.update(self.engine_options())
            if "creator" in options:
                options["creator"] = self._timed_creator(options["creator"])
            engine = create_engine(self.engine_url(), **options)
        except ComputeError:
            raise
        except Exception as exc:
            raise self._connection_error(exc, "cannot create the engine") from self._driver_cause(exc)
        tracker = PoolTracker(engine.pool, pool.size + pool.max_overflow)
        event.listen(engine, "do_connect", lambda *_: tracker.connect_started())
        event.listen(engine.pool, "connect", self._on_pool_connect)
        event.listen(engine.pool, "reset", partial(_on_pool_reset, engine.dialect))
        event.listen(engine, "before_cursor_execute", self._before_cursor_execute, retval=True)
        self._tracker = tracker
        self._telemetry.attach(tracker)
        try:
            engine.connect().close()
        except Exception as exc:
            self._dispose(engine)
            raise self._connection_error(exc, "cannot connect") from self._driver_cause(exc)
        tracker.start_counting()
        if self._config.health.monitor_interval:
            from floe_compute.health import HealthMonitor

            self._monitor = HealthMonitor(self, self._config.health.monitor_interval)
            self._monitor.start()
        return engine

    def _timed_creator(self, creator: Any) -> Any:
        """Custom creators bypass the ``do_connect`` event that times connects."""

        def create() -> Any:
            if self._tracker is not None:
                self._tracker.connect_started()
            return creator()

        return create

    def _on_pool_connect(self, dbapi_connection: Any, record: Any) -> None:
        self.setup_connection(dbapi_connection)

    def disconnect(self) -> None:
        """Cancel the running queries and close every pooled connection.

        Their readers get :class:`QueryCancelledError`. The plugin reconnects if it is used again,
        unless its data did not survive (an in-memory database): then only ``connect()`` does.
        """
        with self._lock:
            monitor, self._monitor = self._monitor, None
        if monitor is not None:
            # first, and waiting for a check in flight: it would otherwise find no engine and
            # create a new one (with a new monitor) behind this disconnect
            monitor.stop()
        with self._lock:
            engine, self._engine = self._engine, None
            executors, self._executors = self._executors, {}
            if engine is not None and self.survives_disconnect_reason:
                self._discarded = True
        if engine is None:
            return
        running = self._running_contexts()
        for context in running:
            context.handle.cancel()
        deadline = time.monotonic() + DISCONNECT_GRACE_S
        for context in running:  # their threads roll back and give the connections back
            context.handle.wait_ended(max(0.0, deadline - time.monotonic()))
        for executor in executors.values():
            executor.shutdown(wait=False)
        self._dispose(engine)

    def _dispose(self, engine: Engine) -> None:
        engine.dispose()
        if self._tracker is not None:
            self._telemetry.detach()
            self._tracker.remove()
        self.on_dispose()

    def __enter__(self) -> ComputePlugin:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<{type(self).__name__} {self.pool_name} {state}>"

    # -- queries ----------------------------------------------------------------------------

    def execute(
        self,
        sql: str | Executable,
        params: Params | None = None,
        *,
        timeout: float | None = None,
        batch_size: int | None = None,
        query_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        arrow: bool = False,
    ) -> QueryResult:
        """Run one statement and return its lazy result.

        ``timeout`` (seconds) defaults to ``timeouts.query``; the deadline covers waiting for a
        connection, running and fetching. The statement runs in its own transaction, committed when
        the result is closed (a read's when exhausted), rolled back on failure or when abandoned.
        ``query_id`` names the query for :meth:`cancel_query` (default: a generated id); ``tags``
        reach the engine where it has a place for them, and the query's span. ``arrow=True`` says
        the result will be read with ``arrow_batches()``/``to_arrow()``, for engines whose fast Arrow
        path must start with the statement (rows can still be read; there from the Arrow batches).
        """
        check_params(sql, params, self.sql_dialect)
        self._ensure_engine()
        context = self._new_query(sql, timeout, query_id, tags)
        context.arrow = bool(arrow)
        size = self._batch_size(batch_size)
        statement = self._statement(sql, params, context)
        if params:
            context.bound_values = _bound_texts(params)
        self._register(context)
        context.span = self._telemetry.query_started(context)
        watchdog.watch(context.handle)
        try:
            if params and isinstance(statement, TextClause):
                self._check_params(statement, params, context)
            if context.handle.stopped:
                raise _Stopped
            connection = self._checkout(context)
        except BaseException as exc:
            context.handle.finish()
            self._unregister(context)
            error = self._query_error(exc, context) if context.handle.stopped else exc
            self._telemetry.query_finished(context, error, 0)
            if error is exc:
                raise
            raise error  # noqa: B904 - the cause is set by _query_error
        context.connection = connection
        context.dbapi_connection = connection.connection.dbapi_connection
        context.handle.bind(partial(self._cancel_on_engine, context))
        try:
            with self._telemetry.current(context):
                self.begin_query(connection, context)
                options = {"stream_results": True, "yield_per": size, **self.query_options(context)}
                connection = connection.execution_options(**options, floe_query=context)
                if isinstance(statement, str):  # no parameters: the SQL runs exactly as written
                    cursor = connection.execution_options(no_parameters=True).exec_driver_sql(statement)
                else:
                    cursor = connection.execute(statement, params or {})
        except BaseException as exc:
            raise self._failed(context, connection, exc, 0)  # noqa: B904 - chained by _failed
        # a write has done its work on the engine: the deadline no longer applies, and the
        # transaction waits for close() (or the end of a `with` block) to commit; one stopped
        # just as it finished is rolled back, and its caller hears of it
        writes = not (cursor.returns_rows and reads_only(context.operation))
        if writes and context.handle.settle() is not QueryState.DONE:
            raise self._failed(context, connection, None, 0)
        return QueryResult(self, context, connection, cursor, size, writes=writes)

    def _statement(
        self, sql: str | Executable, params: Params | None, context: QueryContext
    ) -> str | Executable:
        """What to run: a string without parameters as written; with parameters through ``text()``,
        binding only its real ``:name`` placeholders (not a colon inside a literal or a comment)."""
        if isinstance(sql, Sequence):  # what SQLAlchemy executes as a scalar, as a query
            return select(sql.next_value())
        if not isinstance(sql, str):
            return sql
        if not self.runs_scripts and (count := statement_count(sql, self.sql_dialect)) > 1:
            raise QueryError(
                f"{self.name}: query {context.query_id} ({context.summary}): the string holds "
                f"{count} statements; run them one at a time ({self.name} runs one statement per "
                "execute())",
                engine=self.name,
                query_id=context.query_id,
                statement=context.summary,
            )
        return text(bindable_text(sql, self.sql_dialect)) if params else sql

    def _new_query(
        self,
        sql: str | Executable,
        timeout: float | None,
        query_id: str | None,
        tags: Mapping[str, str] | None,
    ) -> QueryContext:
        timeout = check_timeout(timeout)
        if timeout is None:
            timeout = self._config.timeouts.query
        if query_id is not None and not (isinstance(query_id, str) and _QUERY_ID.match(query_id)):
            raise ConfigError(
                f"query_id {query_id!r} is not valid: expected 1-128 characters of letters, digits "
                "and _ . : -"
            )
        sql_text = sql if isinstance(sql, str) else str(sql)
        context = QueryContext(
            query_id=query_id or f"q-{uuid.uuid4().hex[:16]}",
            summary=summarize(sql_text, self.sql_dialect),
            operation=operation_name(sql_text, self.sql_dialect),
            timeout=timeout,
            max_rows=self._config.limits.max_result_rows,
            tags=_check_tags(tags),
        )
        context.handle = QueryHandle(context.query_id, timeout, None)
        return context

    @staticmethod
    def _batch_size(batch_size: int | None) -> int | None:
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0
        ):
            raise ConfigError(f"batch_size must be a positive integer (got {batch_size!r})")
        return batch_size

    def _failed(
        self, context: QueryContext, connection: Connection, exc: BaseException | None, rows: int
    ) -> BaseException:
        """End a query whose driver call failed; the exception for its caller.

        A Ctrl-C (``KeyboardInterrupt``, also when a driver turned it into its own error) stops the
        query on the engine before the transaction is rolled back (the rollback would otherwise wait
        for the query), and stays a ``KeyboardInterrupt`` for the caller.
        """
        interrupted = _interrupted(exc)
        if interrupted:
            context.handle.cancel()
        error = self._query_error(exc, context)
        self._finish_query(context, connection, error, rows)
        if not interrupted:
            return error
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else KeyboardInterrupt()
        interrupt.__cause__ = error
        return interrupt

    # -- stopping and listing queries -------------------------------------------------------

    def cancel_query(self, query_id: str) -> bool:
        """Cancel a running query from any thread, also while its ``execute()`` is blocked.

        Its caller gets :class:`QueryCancelledError`; the query is stopped on the engine and its
        connection goes back to the pool. False when no query of this plugin has that id (unknown,
        or already finished).
        """
        with self._lock:
            context = self._running.get(query_id)
        return context is not None and context.handle.cancel()

    def running_queries(self) -> list[RunningQuery]:
        """The queries running now: from ``execute()`` until their result is released, or until a
        statement that returns no rows has finished on the engine."""
        return [
            RunningQuery(
                query_id=c.query_id,
                summary=c.summary,
                tags=dict(c.tags),
                started_at=c.started_at,
                elapsed_s=c.handle.elapsed,
                timeout=c.timeout,
            )
            for c in self._running_contexts()
            if c.handle.state is QueryState.RUNNING
        ]

    def _running_contexts(self) -> list[QueryContext]:
        with self._lock:
            return list(self._running.values())

    def _register(self, context: QueryContext) -> None:
        with self._lock:
            if context.query_id in self._running:
                raise ComputeError(
                    f"{self.name}: a query with id {context.query_id!r} is already running on "
                    f"{self.pool_name}; query ids must be unique among running queries",
                    engine=self.name,
                )
            self._running[context.query_id] = context
            preempted = context.query_id in self._preempted
            self._preempted.discard(context.query_id)
        if preempted:
            context.handle.cancel()

    def _unregister(self, context: QueryContext) -> None:
        with self._lock:
            if self._running.get(context.query_id) is context:
                del self._running[context.query_id]

    def _cancel_or_preempt(self, query_id: str) -> None:
        """Cancel a query that may not have started yet (an asyncio task cancelled early)."""
        with self._lock:
            context = self._running.get(query_id)
            if context is None:
                self._preempted.add(query_id)
        if context is not None:
            context.handle.cancel()

    def _forget_preempted(self, query_id: str) -> None:
        with self._lock:
            self._preempted.discard(query_id)

    def _cancel_on_engine(self, context: QueryContext) -> bool:
        return self.cancel(context)

    def _before_cursor_execute(
        self,
        conn: Connection,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> tuple[str, Any]:
        query: QueryContext | None = context.execution_options.get("floe_query") if context else None
        if query is None or query.connection is not conn:
            return statement, parameters
        query.cursor = cursor
        query.sends_parameters = bool(parameters) or not context.no_parameters  # type: ignore[union-attr]
        if query.handle.stopped:
            raise _Stopped  # stopped before it reached the engine: it must not start
        return self.annotate_statement(statement, query), parameters

    # -- asyncio ----------------------------------------------------------------------------

    def aexecute(
        self,
        sql: str | Executable,
        params: Params | None = None,
        *,
        timeout: float | None = None,
        batch_size: int | None = None,
        query_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        arrow: bool = False,
    ) -> AsyncExecution:
        """:meth:`execute` for asyncio: ``await`` it, or use it as ``async with``.

        The driver's blocking calls run on the plugin's worker threads (as many as the pool has
        connections); cancelling the awaiting task cancels the query on the engine.
        """
        from floe_compute.aio import AsyncExecution

        check_params(sql, params, self.sql_dialect)
        return AsyncExecution(
            self,
            sql,
            params,
            timeout=timeout,
            batch_size=batch_size,
            query_id=query_id or f"q-{uuid.uuid4().hex[:16]}",
            tags=tags,
            arrow=arrow,
        )

    async def ahealth_check(self, timeout: float | None = None) -> HealthStatus:
        """:meth:`health_check` without blocking the event loop."""
        from floe_compute.aio import run_blocking

        return await run_blocking(self.health_check, timeout)

    def _worker_pool(self, kind: str = "execute") -> ThreadPoolExecutor:
        """Threads that run the driver's blocking calls for the asyncio API, as many as the pool
        has connections: ``execute`` ones (which may wait for a connection) and ``fetch`` ones
        for results that hold a connection, so that queries waiting for a connection never stand
        in the way of the reads that would give one back."""
        executor = self._executors.get(kind)
        if executor is None:
            from concurrent.futures import ThreadPoolExecutor

            with self._lock:
                executor = self._executors.get(kind)
                if executor is None:
                    pool = self._config.pool
                    executor = self._executors[kind] = ThreadPoolExecutor(
                        max_workers=pool.size + pool.max_overflow,
                        thread_name_prefix=f"floe-compute-{self.name}-{kind}",
                    )
        return executor

    def _check_params(self, statement: TextClause, params: Params, context: QueryContext) -> None:
        expected = set(statement.compile(dialect=self.engine.dialect).params)
        given = set(params)
        if given != expected:
            problems = []
            if expected - given:
                problems.append("missing " + ", ".join(f":{p}" for p in sorted(expected - given)))
            if given - expected:
                problems.append("unexpected " + ", ".join(f":{p}" for p in sorted(given - expected)))
            takes = ", ".join(f":{p}" for p in sorted(expected)) or "no parameters"
            raise QueryError(
                f"{self.name}: query {context.query_id} ({context.summary}): parameters do not "
                f"match the statement: {'; '.join(problems)} (the statement takes {takes})",
                engine=self.name,
                query_id=context.query_id,
                statement=context.summary,
            )

    def _checkout(self, context: QueryContext | None = None) -> Connection:
        engine = self._ensure_engine()
        tracker = self._tracker
        assert tracker is not None
        started = time.perf_counter()
        tracker.wait_started()
        gave_up = False
        handle = context.handle if context is not None else None
        limit = time.monotonic() + self._config.pool.timeout
        if handle is not None and handle.deadline is not None:
            limit = min(limit, handle.deadline)
        try:
            while True:
                # waits in slices, so that a cancel or the deadline ends the wait promptly
                _DeadlinePool._until.value = min(limit, time.monotonic() + CHECKOUT_SLICE_S)
                try:
                    return engine.connect()
                except sa_exc.TimeoutError:
                    pass
                if handle is not None and handle.stopped:
                    raise _Stopped
                if time.monotonic() < limit:
                    continue
                if handle is not None and handle.deadline is not None and limit >= handle.deadline:
                    while handle.expire() is None:  # its lock is busy only for an instant here
                        pass
                    raise _Stopped  # the deadline passed while waiting: a query timeout
                gave_up = True
                pool = self._config.pool
                raise PoolExhaustedError(
                    f"{self.name}: no connection free in pool {self.pool_name!r} "
                    f"(size={pool.size}, max_overflow={pool.max_overflow}) after waiting "
                    f"pool.timeout={pool.timeout:g}s",
                    engine=self.name,
                )
        except ComputeError:
            raise
        except _Stopped:
            raise
        except Exception as exc:
            raise self._connection_error(exc, "cannot connect") from self._driver_cause(exc)
        finally:
            _DeadlinePool._until.value = None
            tracker.wait_ended(time.perf_counter() - started, gave_up=gave_up)

    def _finish_query(
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
        exception (``rollback``).
        """
        state = context.handle.finish()
        self._unregister(context)
        committing = error is None and state is QueryState.DONE and not rollback
        failure: BaseException | None = None
        try:
            if connection.invalidated:
                pass  # lost with its transaction; a rollback would only check out a new connection
            elif committing:
                connection.commit()
                connection.info[_TRANSACTION_ENDED] = True
            else:
                connection.rollback()
                connection.info[_TRANSACTION_ENDED] = True
        except Exception as exc:
            # a connection that cannot end its transaction is not given to anyone else
            connection.invalidate()
            if committing:
                failure = error = self._query_error(exc, context)
        finally:
            if context.cursor is not None:
                # after the transaction: a server-side cursor is gone with it (no round trip), and
                # before the connection is anyone else's
                with contextlib.suppress(Exception):
                    context.cursor.close()
                context.cursor = None
            connection.close()
        if state is QueryState.TIMED_OUT or isinstance(error, QueryTimeoutError):
            self._log_timeout(context)
        self._telemetry.query_finished(context, error, rows)
        if failure is not None:
            raise failure  # the commit failed: the caller must not believe it happened

    def _log_timeout(self, context: QueryContext) -> None:
        elapsed = context.handle.elapsed
        fields = {
            "event": "query_timeout",
            "engine": self.name,
            "pool": self.pool_name,
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

    # -- errors -----------------------------------------------------------------------------

    def _scrub(self, message: str, context: QueryContext | None = None) -> str:
        message = redact(message, self._config.secrets)
        if context is not None and context.bound_values:
            message = _mask_values(message, context.bound_values)
        return message

    def _driver_cause(self, exc: BaseException | None) -> BaseException | None:
        return driver_cause(exc, self._config.secrets, keep=self._config.errors.keep_driver_cause)

    def _connection_error(self, exc: BaseException, doing: str) -> ComputeError:
        if isinstance(exc, ComputeError):
            return exc
        orig: BaseException = (exc.orig or exc) if isinstance(exc, sa_exc.DBAPIError) else exc
        mapped = self.classify_error(orig) if isinstance(orig, Exception) else None
        where = display_url(self._config.url)
        detail = mapped[1] if mapped else _driver_message(orig)
        cls = mapped[0] if mapped and issubclass(mapped[0], ConnectionFailedError) else None
        return (cls or ConnectionFailedError)(
            self._scrub(f"{self.name}: {doing} to {where}: {detail}"), engine=self.name
        )

    def _query_error(self, exc: BaseException | None, context: QueryContext) -> BaseException:
        """The error the caller sees for a failed, timed-out or cancelled query."""
        state = context.handle.state
        if state is QueryState.RUNNING and (
            exc is None or isinstance(exc, ComputeError) or not isinstance(exc, Exception)
        ):
            return exc if exc is not None else QueryError(f"{self.name}: query {context.query_id} failed")
        where = f"{self.name}: query {context.query_id} ({context.summary})"
        orig = exc.orig if isinstance(exc, sa_exc.StatementError) and exc.orig else exc
        if isinstance(orig, _Stopped):
            orig = None
        mapped = self.classify_error(orig) if isinstance(orig, Exception) else None
        ids = {"engine": self.name, "query_id": context.query_id, "statement": context.summary}
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
            message = f"{where}: the connection was lost: {_driver_message(exc.orig or exc)}"
            error = ConnectionFailedError(self._scrub(message, context), engine=self.name)
        else:
            assert orig is not None
            cls: type[ComputeError] = mapped[0] if mapped else QueryError
            detail = mapped[1] if mapped else _driver_message(orig)
            if issubclass(cls, QueryError):
                error = cls(self._scrub(f"{where} failed: {detail}", context), **ids)
            else:
                error = ConnectionFailedError(self._scrub(f"{where}: {detail}", context), engine=self.name)
        if isinstance(error, QueryError):
            error.tags = dict(context.tags)
        return _caused_by(error, self._driver_cause(orig))

    # -- health and statistics --------------------------------------------------------------

    def pool_stats(self) -> PoolStats:
        """A snapshot of the pool, counted from its events."""
        self._ensure_engine()
        assert self._tracker is not None
        return self._tracker.snapshot()

    def discard_idle_connections(self) -> None:
        """Close the idle pooled connections (after a failure), so the next checkouts open fresh
        ones; they count as invalidations and reconnects in :meth:`pool_stats`."""
        if self._tracker is not None:
            self._tracker.discard_idle()

    def health_check(self, timeout: float | None = None) -> HealthStatus:
        """Ping the engine through the pool. Never raises: failures come back as ``unhealthy``.

        A saturated pool is ``degraded`` at once: queueing the ping behind users would only time
        the queue.
        """
        timeout = timeout or min(self._config.timeouts.connect, 10.0)
        started = time.perf_counter()
        state, message = HealthState.HEALTHY, "ok"
        before = self._tracker.snapshot() if self._tracker else None
        # every connection in use: queueing the ping behind users would only time the queue
        busy = before if before is not None and before.in_use >= before.max else None
        if busy is None:
            try:
                with self.execute(self.ping_statement, timeout=timeout) as result:
                    result.fetchall()
            except PoolExhaustedError:
                busy = self.pool_stats()
            except QueryTimeoutError as exc:  # the pool filled up meanwhile, or the engine is stuck
                stats = self.pool_stats()
                if stats.in_use >= stats.max:
                    busy = stats
                else:
                    state, message = HealthState.UNHEALTHY, str(exc)
            except Exception as exc:
                state = HealthState.UNHEALTHY
                message = str(exc) if isinstance(exc, ComputeError) else self._scrub(repr(exc))
        latency_ms = (time.perf_counter() - started) * 1000
        pool = self._tracker.snapshot() if self._tracker else None
        if busy is None and pool is not None and pool.saturated:
            busy = pool
        if state is HealthState.HEALTHY and busy is not None:
            state = HealthState.DEGRADED
            message = f"pool saturated: {busy.in_use}/{busy.max} in use, {busy.waiting} waiting"
        elif state is HealthState.HEALTHY and latency_ms > self._config.health.slow_ping_ms:
            state = HealthState.DEGRADED
            message = f"ping took {latency_ms:.0f} ms (threshold {self._config.health.slow_ping_ms:g} ms)"
        status = HealthStatus(
            status=state,
            latency_ms=latency_ms,
            message=message,
            checked_at=datetime.now(timezone.utc),
            pool=pool,
        )
        self._telemetry.health_changed(status)
        return status

    # -- dbt --------------------------------------------------------------------------------

    def dbt_profile(self, profile: str = "floe", target: str = "dev") -> dict[str, Any]:
        """A ``profiles.yml`` mapping for this target, ready for ``yaml.safe_dump``."""
        return {profile: {"target": target, "outputs": {target: self.dbt_target()}}}

    def dbt_env(self) -> dict[str, str]:
        """Environment variables a dbt process needs for :meth:`dbt_profile`: the profile refers
        to secrets with ``env_var()`` and never contains them."""
        return {}

    # -- engine hooks -----------------------------------------------------------------------

    ping_statement: ClassVar[str] = "SELECT 1"

    def engine_url(self) -> URL:
        """The URL handed to ``create_engine``; an engine may pick its own dialect here."""
        return self._config.sqlalchemy_url()

    def engine_options(self) -> dict[str, Any]:
        """Extra ``create_engine`` options: pool class, ``creator``, ``connect_args``."""
        return {}

    def setup_connection(self, dbapi_connection: Any) -> None:  # noqa: B027
        """Prepare a newly opened DBAPI connection: session settings, extensions, catalogs."""

    runs_scripts: ClassVar[bool] = False
    """Whether one ``execute()`` may run several statements (the last one's rows come back);
    otherwise such a string is refused before it reaches the engine."""

    survives_disconnect_reason: ClassVar[str | None] = None
    """Why the data is gone after :meth:`disconnect` (an in-memory database), or None when a
    reconnect finds it again. Engines make it a property where it depends on the config."""

    def begin_query(self, connection: Connection, context: QueryContext) -> None:  # noqa: B027
        """Per-query setup inside the query's transaction, such as the statement timeout."""

    def query_options(self, context: QueryContext) -> dict[str, Any]:
        """Extra SQLAlchemy execution options for the statement. The core adds ``floe_query``
        (the :class:`QueryContext`), which an engine's dialect can read in ``do_execute``."""
        return {}

    def annotate_statement(self, statement: str, context: QueryContext) -> str:
        """The SQL text as sent to the driver, for example with the tags as a comment."""
        return statement

    @abc.abstractmethod
    def cancel(self, context: QueryContext) -> bool:
        """Stop the query on the engine; True if a cancel request went to a statement the engine
        runs, False if there was nothing to stop (so no message claims an engine cancel).

        Called from the watchdog or from :meth:`cancel_query`'s thread while the query's own
        thread may be blocked in the driver; possibly before the statement reached the driver
        (``context.cursor`` is None) and more than once until the query ends. Must be cheap and
        idempotent.
        """

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        """The driver's own Arrow stream for an executed cursor, or None to build batches."""
        return None

    def arrow_type(self, column: Any, dbapi_cursor: Any) -> pa.DataType | None:
        """The Arrow type of one result column (an entry of ``dbapi_cursor.description``) for
        batches built from rows, or None when the engine cannot tell (then the first batch's
        values decide)."""
        return None

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        """Map a driver error to an error class and a message, or None for the default."""
        return None

    @abc.abstractmethod
    def dbt_target(self) -> dict[str, Any]:
        """The dbt output (``type:`` and the adapter's keys) for this target."""

    def on_dispose(self) -> None:  # noqa: B027
        """Release what ``engine_options`` created, after the pool is disposed."""


_TRANSACTION_ENDED = "floe_compute.transaction_ended"


def _on_pool_reset(dialect: Any, dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """Rollback-on-return, skipped right after execute()'s own commit or rollback: a second round
    trip to the engine for nothing. Other users of ``plugin.engine`` keep the usual rollback."""
    if record.info.pop(_TRANSACTION_ENDED, False) or state.transaction_was_reset:
        return
    dialect.do_rollback(dbapi_connection)


def _caused_by(error: ComputeError, cause: BaseException | None) -> ComputeError:
    """Chain the driver's exception as ``__cause__``, hiding SQLAlchemy's wrapper from the trace."""
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error


def _driver_message(exc: BaseException) -> str:
    """The driver's message without the echo of the SQL text that some drivers append."""
    lines = []
    for line in str(exc).strip().splitlines():
        if line.startswith(("LINE ", "[SQL:", "[parameters:", "(Background on")):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines) or type(exc).__name__


DISCONNECT_GRACE_S = 1.0
"""How long ``disconnect()`` waits for cancelled queries to give their connections back."""


def _check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Tags as given, or a :class:`ConfigError` naming the first tag that is not valid."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ConfigError(f"tags must be a mapping of strings to strings (got {type(tags).__name__})")
    if len(tags) > MAX_TAGS:
        raise ConfigError(f"tags: at most {MAX_TAGS} tags (got {len(tags)})")
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.match(key) or len(key) > MAX_TAG_KEY:
            raise ConfigError(
                f"tag {key!r}: a tag name is 1-{MAX_TAG_KEY} characters of letters, digits and _ . -, "
                "starting with a letter or _"
            )
        if not isinstance(value, str):
            raise ConfigError(f"tag {key!r}: the value must be a string (got {type(value).__name__})")
        if len(value) > MAX_TAG_VALUE or not value.isprintable():
            raise ConfigError(
                f"tag {key!r}: the value must be at most {MAX_TAG_VALUE} printable characters "
                f"(got {len(value)} characters)"
            )
        checked[key] = value
    return checked


def _interrupted(exc: BaseException | None) -> bool:
    """A Ctrl-C, as such or as the cause of a driver's error (DuckDB's "Query interrupted")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _how(exc: BaseException | None, context: QueryContext) -> str:
    """What happened to a stopped query, without claiming an engine cancel that did not run."""
    if context.connection is None or isinstance(exc, _Stopped):
        return " before it started on the engine"
    if exc is None:
        return "; its result was discarded"
    if context.handle.cancel_error is not None:
        return "; the cancel request to the engine failed"
    return " and was cancelled on the engine" if context.handle.cancel_sent else ""
