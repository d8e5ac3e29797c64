"""ComputePlugin: the public facade of one engine, and the engine contract it inherits.

Each public method delegates in a few lines to the unit that does the work: the engine and its
pool (:mod:`~floe_compute.connections`), the query lifecycle (:mod:`~floe_compute.lifecycle`),
the running-queries registry (:mod:`~floe_compute.running`), health (:mod:`~floe_compute.health`),
telemetry and the asyncio face. An engine module subclasses it and overrides the hooks of
:class:`~floe_compute.hooks.EngineHooks`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from floe_compute.connections import Connections
from floe_compute.context import Params, QueryContext, RunningQuery
from floe_compute.errors import ConnectionFailedError
from floe_compute.health import HealthMonitor, HealthStatus, check
from floe_compute.hooks import EngineHooks
from floe_compute.lifecycle import QueryLifecycle
from floe_compute.load import LoadResult, aload, load
from floe_compute.params import check_params
from floe_compute.pool import PoolStats
from floe_compute.prepare import new_query_id
from floe_compute.result import QueryResult, result_of
from floe_compute.running import RunningQueries
from floe_compute.session import OpenSessions, Session
from floe_compute.telemetry import Telemetry
from floe_compute.workers import Workers

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql.base import Executable

    from floe_compute.aio import AsyncExecution
    from floe_compute.config import ComputeConfig
    from floe_compute.timeouts import QueryHandle

__all__ = ["ComputePlugin", "QueryContext", "RunningQuery"]

DISCONNECT_GRACE_S = 1.0
"""How long ``disconnect()`` waits for cancelled queries to give their connections back."""


class ComputePlugin(EngineHooks):
    """One engine behind the common interface. Subclasses live in ``floe_compute.engines``."""

    def __init__(self, config: ComputeConfig) -> None:
        super().__init__(config)
        self._lock = threading.RLock()
        self._engine: Engine | None = None
        self._monitor: HealthMonitor | None = None
        self._discarded = False
        self._telemetry = Telemetry(
            db_system=self.db_system,
            namespace=config.url.database or "",
            pool_name=self.pool_name,
            enabled=config.telemetry,
        )
        self._running = RunningQueries(self.name, self.pool_name)
        self._lifecycle = QueryLifecycle(
            self,
            self._running,
            self._telemetry,
            engine=self._ensure_engine,
            checkout=self._checkout,
            pool_name=self.pool_name,
        )
        self._connections = Connections(
            self,
            before_execute=self._lifecycle.before_cursor_execute,
            attach=self._telemetry.attach,
            detach=self._telemetry.detach,
        )
        self._workers = Workers(self.name, config.pool.size + config.pool.max_overflow)
        self._sessions = OpenSessions()

    # -- lifecycle --------------------------------------------------------------------------

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
                self._engine = self._connections.create()
                if self._config.health.monitor_interval:
                    self._monitor = HealthMonitor(self, self._config.health.monitor_interval)
                    self._monitor.start()
            return self._engine

    def _checkout(self, handle: QueryHandle | None = None) -> Connection:
        return self._connections.checkout(self._ensure_engine(), handle)

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
            if engine is not None and self.survives_disconnect_reason:
                self._discarded = True
        if engine is None:
            return
        self._running.cancel_all(DISCONNECT_GRACE_S)
        self._sessions.end_all()  # their open transactions roll back
        self._workers.shutdown()
        self._connections.dispose(engine)

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
        started = self._lifecycle.start(
            sql, params, timeout=timeout, batch_size=batch_size, query_id=query_id, tags=tags, arrow=arrow
        )
        return result_of(self._lifecycle, started)

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
        from floe_compute.aio import AsyncExecution  # asyncio is imported by its users only

        check_params(sql, params, self.sql_dialect)  # before it is copied for the worker thread
        query_id = query_id or new_query_id()
        call = partial(
            self.execute,
            sql,
            dict(params) if params else None,
            timeout=timeout,
            batch_size=batch_size,
            query_id=query_id,
            tags=tags,
            arrow=arrow,
        )
        return AsyncExecution(call, query_id, workers=self._worker_threads(), running=self._running)

    def session(self, timeout: float | None = None, tags: Mapping[str, str] | None = None) -> Session:
        """One engine session for a ``with`` (or ``async with``) block: temp tables and settings
        hold from one statement to the next; ``timeout`` bounds the whole block; ``tags`` go on
        every statement. See :class:`~floe_compute.session.Session`."""
        return Session(
            self._lifecycle,
            checkout=self._checkout,
            workers=self._worker_threads,
            sessions=self._sessions,
            timeout=timeout,
            tags=tags,
        )

    asession = session  # the same object serves ``async with compute.asession() as s:``

    def _worker_threads(self) -> Workers:
        return self._workers

    # -- loading ----------------------------------------------------------------------------

    def load_arrow(
        self,
        table: str,
        data: Any,
        *,
        mode: str = "append",
        timeout: float | None = None,
        query_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        batch_size: int | None = None,
    ) -> LoadResult:
        """Bulk-load Arrow ``data`` (Table, RecordBatchReader, RecordBatches, a DataFrame) into
        ``table`` on the engine's native path, as one query (docs/loading.md); ``mode`` is
        ``append``, ``create`` or ``replace``. All or nothing where the engine has transactions."""
        return load(
            self._lifecycle, self._checkout, table, data, mode=mode, timeout=timeout,
            query_id=query_id, tags=tags, batch_size=batch_size,
        )  # fmt: skip

    async def aload_arrow(
        self, table: str, data: Any, *, query_id: str | None = None, **options: Any
    ) -> LoadResult:
        """:meth:`load_arrow` for asyncio; cancelling the task cancels the load on the engine."""
        query_id = query_id or new_query_id()
        call = partial(self.load_arrow, table, data, query_id=query_id, **options)
        return await aload(call, query_id, self._worker_threads(), self._running)

    # -- stopping and listing queries -------------------------------------------------------

    def cancel_query(self, query_id: str) -> bool:
        """Cancel a running query from any thread, also while its ``execute()`` is blocked.

        Its caller gets :class:`QueryCancelledError`; the query is stopped on the engine and its
        connection goes back to the pool. False when no query of this plugin has that id (unknown,
        or already finished).
        """
        return self._running.cancel(query_id)

    def running_queries(self) -> list[RunningQuery]:
        """The queries running now: from ``execute()`` until their result is released, or until a
        statement that returns no rows has finished on the engine."""
        return self._running.listed()

    # -- health and statistics --------------------------------------------------------------

    def pool_stats(self) -> PoolStats:
        """A snapshot of the pool, counted from its events."""
        self._ensure_engine()
        stats = self._connections.snapshot()
        assert stats is not None
        return stats

    def discard_idle_connections(self) -> None:
        """Close the idle pooled connections (after a failure), so the next checkouts open fresh
        ones; they count as invalidations and reconnects in :meth:`pool_stats`."""
        self._connections.discard_idle()

    def health_check(self, timeout: float | None = None) -> HealthStatus:
        """Ping the engine through the pool. Never raises: failures come back as ``unhealthy``.

        A saturated pool is ``degraded`` at once: queueing the ping behind users would only time
        the queue.
        """
        status = check(
            self._ping,
            self._connections.snapshot,
            timeout=timeout or min(self._config.timeouts.connect, 10.0),
            slow_ping_ms=self._config.health.slow_ping_ms,
            scrub=self.scrub,
        )
        self._telemetry.health_changed(str(status.status))
        return status

    def _ping(self, timeout: float) -> None:
        with self.execute(self.ping_statement, timeout=timeout) as result:
            result.fetchall()

    async def ahealth_check(self, timeout: float | None = None) -> HealthStatus:
        """:meth:`health_check` without blocking the event loop."""
        from floe_compute.aio import run_blocking

        return await run_blocking(self.health_check, timeout)

    # -- dbt --------------------------------------------------------------------------------

    def dbt_profile(self, profile: str = "floe", target: str = "dev") -> dict[str, Any]:
        """A ``profiles.yml`` mapping for this target, ready for ``yaml.safe_dump``."""
        return {profile: {"target": target, "outputs": {target: self.dbt_target()}}}
