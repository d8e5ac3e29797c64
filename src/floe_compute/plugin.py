"""ComputePlugin: one SQLAlchemy engine, and everything the platform needs around it.

The core is written once here: the engine and pool lifecycle, checkouts, execution, result
lifecycle, timeouts, error translation, health and statistics. An engine module only overrides the
hooks at the bottom of the class (SQLMesh's engine adapters and Superset's engine specs have the same
shape).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import PoolResetState, QueuePool
from sqlalchemy.sql.elements import TextClause

from floe_compute.config import ComputeConfig
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    PoolExhaustedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    redact,
)
from floe_compute.health import HealthState, HealthStatus
from floe_compute.pool import PoolStats, PoolTracker
from floe_compute.result import QueryResult
from floe_compute.sql import operation_name, summarize
from floe_compute.telemetry import Telemetry
from floe_compute.timeouts import QueryHandle, QueryState, watchdog

if TYPE_CHECKING:
    from types import TracebackType

    import pyarrow as pa
    from sqlalchemy.sql.base import Executable

    from floe_compute.health import HealthMonitor

__all__ = ["ComputePlugin", "QueryContext"]

log = logging.getLogger("floe_compute")

Params = dict[str, Any]


@dataclass(slots=True)
class QueryContext:
    """What the core knows about one query, from checkout to release."""

    query_id: str
    summary: str
    operation: str
    timeout: float | None
    max_rows: int | None
    handle: QueryHandle = field(init=False)
    span: Any = None
    started: float = field(default_factory=time.perf_counter)


class ComputePlugin(abc.ABC):
    """One engine behind the common interface. Subclasses live in ``floe_compute.engines``."""

    name: ClassVar[str]
    """The plugin's name, as ``list_plugins()`` shows it."""
    schemes: ClassVar[tuple[str, ...]]
    """URL backends it claims (``postgresql`` matches ``postgresql+psycopg://``)."""
    config_class: ClassVar[type[ComputeConfig]] = ComputeConfig
    db_system: ClassVar[str]
    """The OpenTelemetry ``db.system.name``."""
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

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def config(self) -> ComputeConfig:
        return self._config

    @property
    def pool_name(self) -> str:
        """The pool's name in metrics and logs: the target name, else the URL without password."""
        return self._config.name or self._config.url.render_as_string(hide_password=True)

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
        """Create the engine and open the first connection, so a bad target fails here."""
        self._ensure_engine()
        return self

    def _ensure_engine(self) -> Engine:
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
            return self._engine

    def _create_engine(self) -> Engine:
        pool = self._config.pool
        pre_ping = self.default_pre_ping if pool.pre_ping is None else pool.pre_ping
        options: dict[str, Any] = {
            "poolclass": QueuePool,
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
            raise self._connection_error(exc, "cannot create the engine") from exc
        tracker = PoolTracker(engine.pool, pool.size + pool.max_overflow)
        event.listen(engine, "do_connect", lambda *_: tracker.connect_started())
        event.listen(engine.pool, "connect", self._on_pool_connect)
        event.listen(engine.pool, "reset", partial(_on_pool_reset, engine.dialect))
        self._tracker = tracker
        self._telemetry.attach(tracker)
        try:
            engine.connect().close()
        except Exception as exc:
            self._dispose(engine)
            raise self._connection_error(exc, "cannot connect") from exc
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
        """Close every pooled connection. The plugin reconnects if it is used again."""
        with self._lock:
            engine, self._engine = self._engine, None
            monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()
        if engine is not None:
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
    ) -> QueryResult:
        """Run one statement and return its lazy result.

        ``timeout`` (seconds) defaults to ``timeouts.query``. The statement runs in its own
        transaction, committed when the result is exhausted or closed, rolled back on failure.
        """
        self._ensure_engine()
        if timeout is None:
            timeout = self._config.timeouts.query
        elif not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds (got {timeout!r})")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
            raise ConfigError(f"batch_size must be a positive integer (got {batch_size!r})")
        statement = text(sql) if isinstance(sql, str) else sql
        sql_text = sql if isinstance(sql, str) else str(statement)
        context = QueryContext(
            query_id=f"q-{uuid.uuid4().hex[:16]}",
            summary=summarize(sql_text),
            operation=operation_name(sql_text),
            timeout=timeout,
            max_rows=self._config.limits.max_result_rows,
        )
        context.handle = QueryHandle(context.query_id, timeout, None)
        context.span = self._telemetry.query_started(context)
        try:
            if params and isinstance(statement, TextClause):
                self._check_params(statement, params, context)
            connection = self._checkout()
        except BaseException as exc:
            context.handle.finish()
            self._telemetry.query_finished(context, exc, 0)
            raise
        context.handle.bind(partial(self.cancel, connection.connection.dbapi_connection))
        watchdog.watch(context.handle)
        size = batch_size or self.default_batch_size
        try:
            self.begin_query(connection, timeout)
            cursor = connection.execution_options(stream_results=True, yield_per=size).execute(
                statement, params or {}
            )
        except BaseException as exc:
            error = self._query_error(exc, context)
            self._finish_query(context, connection, error, 0)
            raise error  # noqa: B904 - the driver's error is already its __cause__
        return QueryResult(self, context, connection, cursor, size)

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

    def _checkout(self) -> Connection:
        engine = self._ensure_engine()
        tracker = self._tracker
        assert tracker is not None
        started = time.perf_counter()
        tracker.wait_started()
        gave_up = False
        try:
            return engine.connect()
        except sa_exc.TimeoutError:
            gave_up = True
            pool = self._config.pool
            raise PoolExhaustedError(
                f"{self.name}: no connection free in pool {self.pool_name!r} "
                f"(size={pool.size}, max_overflow={pool.max_overflow}) after waiting "
                f"pool.timeout={pool.timeout:g}s",
                engine=self.name,
            ) from None
        except Exception as exc:
            raise self._connection_error(exc, "cannot connect") from exc
        finally:
            tracker.wait_ended(time.perf_counter() - started, gave_up=gave_up)

    def _finish_query(
        self,
        context: QueryContext,
        connection: Connection,
        error: BaseException | None,
        rows: int,
    ) -> None:
        """End the transaction and give the connection back; called exactly once per query."""
        state = context.handle.finish()
        committing = error is None and state is QueryState.DONE
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
        }
        log.warning(
            "query timed out: " + " ".join(f"{k}={v!r}" for k, v in fields.items() if k != "event"),
            extra={"floe": fields},
        )

    # -- errors -----------------------------------------------------------------------------

    def _scrub(self, message: str) -> str:
        return redact(message, self._config.secrets)

    def _connection_error(self, exc: BaseException, doing: str) -> ComputeError:
        if isinstance(exc, ComputeError):
            return exc
        orig: BaseException = (exc.orig or exc) if isinstance(exc, sa_exc.DBAPIError) else exc
        mapped = self.classify_error(orig) if isinstance(orig, Exception) else None
        where = self._config.url.render_as_string(hide_password=True)
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
        mapped = self.classify_error(orig) if isinstance(orig, Exception) else None
        ids = {"engine": self.name, "query_id": context.query_id, "statement": context.summary}
        error: QueryError | ConnectionFailedError
        # the engine's own statement timeout may fire before the watchdog: the same timeout for the caller
        if state is QueryState.TIMED_OUT or (mapped and issubclass(mapped[0], QueryTimeoutError)):
            elapsed = context.handle.elapsed
            limit = "the engine's statement timeout" if context.timeout is None else f"{context.timeout:g}s"
            error = QueryTimeoutError(
                f"{where} timed out after {elapsed:.3f}s (timeout {limit}) and was cancelled on the engine",
                **ids,
            )
            error.timeout = context.timeout or 0.0
            error.elapsed = elapsed
        elif state is QueryState.CANCELLED:
            error = QueryCancelledError(f"{where} was cancelled", **ids)
        elif isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            message = f"{where}: the connection was lost: {_driver_message(exc.orig or exc)}"
            error = ConnectionFailedError(self._scrub(message), engine=self.name)
        else:
            assert orig is not None
            cls: type[ComputeError] = mapped[0] if mapped else QueryError
            detail = mapped[1] if mapped else _driver_message(orig)
            if issubclass(cls, QueryError):
                error = cls(self._scrub(f"{where} failed: {detail}"), **ids)
            else:
                error = ConnectionFailedError(self._scrub(f"{where}: {detail}"), engine=self.name)
        return _caused_by(error, orig)

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
        busy = before if before is not None and before.saturated else None
        if busy is None:
            try:
                with self.execute(self.ping_statement, timeout=timeout) as result:
                    result.fetchall()
            except PoolExhaustedError:
                busy = self.pool_stats()
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

    def begin_query(self, connection: Connection, timeout: float | None) -> None:  # noqa: B027
        """Per-query setup inside the query's transaction, such as the statement timeout."""

    @abc.abstractmethod
    def cancel(self, dbapi_connection: Any) -> None:
        """Cancel whatever runs on this connection, on the engine. Called from another thread."""

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
