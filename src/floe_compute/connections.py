"""One plugin's SQLAlchemy engine and its pool: created on first use, checked out under a
query's deadline, disposed at ``disconnect()``.

Pooling, pre-ping and reconnects are SQLAlchemy's ``QueuePool``; this module adds what a query
needs of it: a checkout that a deadline or a cancel can end (:class:`DeadlinePool`), statistics fed
from the pool's events (:class:`~floe_compute.pool.PoolTracker`), and a rollback-on-return that is
skipped when the query already ended its transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import PoolResetState, QueuePool

from floe_compute.context import StatementStopped
from floe_compute.errors import ComputeError, PoolExhaustedError
from floe_compute.hooks import EngineHooks
from floe_compute.pool import PoolStats, PoolTracker
from floe_compute.timeouts import QueryHandle

__all__ = ["TRANSACTION_ENDED", "Connections", "DeadlinePool"]

CHECKOUT_SLICE_S = 0.05
"""How often a query waiting for a connection looks whether it was cancelled meanwhile."""

TRANSACTION_ENDED = "floe_compute.transaction_ended"
"""Set in ``connection.info`` by a query that committed or rolled back itself."""

BeforeExecute = Callable[..., tuple[str, Any]]


class _QuietCursorClose(logging.Filter):
    """SQLAlchemy logs a traceback when closing the cursor of a statement that failed fails (the
    connection is gone); the query's own error, and its WARNING line, already say what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Error closing cursor"


class DeadlinePool(QueuePool):
    """A ``QueuePool`` whose checkout waits at most until a per-thread time (the checkout sets it), so
    a query's deadline or cancel can end its wait without changing the pool's ``pool.timeout``."""

    _until = threading.local()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SQLAlchemy names a pool's logger after its class's module, which would put its INFO
        # lines ("Pool disposed", "Pool recreating") under floe_compute: keep them under
        # sqlalchemy.pool, where users (and echo_pool) expect them
        if not kwargs.get("echo"):
            self.logger = logging.getLogger("sqlalchemy.pool.impl.QueuePool")

    @property
    def _timeout(self) -> float:
        until: float | None = getattr(self._until, "value", None)
        if until is None:
            return self._pool_timeout
        return max(0.0, until - time.monotonic())

    @_timeout.setter
    def _timeout(self, value: float) -> None:
        self._pool_timeout = value


# SQLAlchemy names a pool's logger after the pool's class
logging.getLogger(f"{DeadlinePool.__module__}.{DeadlinePool.__name__}").addFilter(_QuietCursorClose())


class Connections:
    """The engine of one plugin: ``ensure()`` creates it (and opens a first connection, so a bad
    target fails there), ``checkout()`` hands out connections, ``dispose()`` closes them all."""

    def __init__(
        self,
        hooks: EngineHooks,
        *,
        before_execute: BeforeExecute,
        attach: Callable[[PoolTracker], None],
        detach: Callable[[], None],
    ) -> None:
        self._hooks = hooks
        self._before_execute = before_execute
        self._attach = attach
        self._detach = detach
        self.engine: Engine | None = None
        self.tracker: PoolTracker | None = None

    def create(self) -> Engine:
        """A new engine with its pool events, and a first connection opened and given back."""
        hooks, pool = self._hooks, self._hooks.config.pool
        pre_ping = hooks.default_pre_ping if pool.pre_ping is None else pool.pre_ping
        options: dict[str, Any] = {
            "poolclass": DeadlinePool,
            "pool_size": pool.size,
            "max_overflow": pool.max_overflow,
            "pool_timeout": pool.timeout,
            "pool_recycle": pool.recycle or -1,
            "pool_pre_ping": pre_ping,
            # _on_pool_reset rolls back, unless the query already ended the transaction
            "pool_reset_on_return": None,
            # drivers' messages must never carry parameter values into logs or errors
            "hide_parameters": True,
        }
        try:
            options.update(hooks.engine_options())
            if "creator" in options:
                options["creator"] = self._timed_creator(options["creator"])
            engine = create_engine(hooks.engine_url(), **options)
        except ComputeError:
            raise
        except Exception as exc:
            raise hooks.connection_error(exc, "cannot create the engine") from hooks.driver_cause(exc)
        tracker = PoolTracker(engine.pool, pool.size + pool.max_overflow)
        event.listen(engine, "do_connect", lambda *_: tracker.connect_started())
        event.listen(engine.pool, "connect", lambda dbapi, _record: hooks.setup_connection(dbapi))
        event.listen(engine.pool, "reset", partial(_on_pool_reset, engine.dialect))
        _send_through(engine, self._before_execute)
        self.tracker = tracker
        self._attach(tracker)
        try:
            engine.connect().close()
        except Exception as exc:
            self.dispose(engine)
            raise hooks.connection_error(exc, "cannot connect") from hooks.driver_cause(exc)
        tracker.start_counting()
        self.engine = engine
        return engine

    def _timed_creator(self, creator: Any) -> Any:
        """Custom creators bypass the ``do_connect`` event that times connects."""

        def create() -> Any:
            if self.tracker is not None:
                self.tracker.connect_started()
            return creator()

        return create

    def snapshot(self) -> PoolStats | None:
        """The pool's statistics, or None before the engine exists."""
        return self.tracker.snapshot() if self.tracker is not None else None

    def discard_idle(self) -> None:
        if self.tracker is not None:
            self.tracker.discard_idle()

    def dispose(self, engine: Engine) -> None:
        engine.dispose()
        if self.tracker is not None:
            self._detach()
            self.tracker.remove()
        self._hooks.on_dispose()

    def checkout(self, engine: Engine, handle: QueryHandle | None = None) -> Connection:
        """A pooled connection, waiting at most ``pool.timeout`` and never past the query's deadline.

        The wait goes in slices, so a cancel or the deadline ends it promptly: then
        :class:`StatementStopped` (the query's state says which), or :class:`PoolExhaustedError`.
        """
        tracker = self.tracker
        assert tracker is not None
        started = time.perf_counter()
        tracker.wait_started()
        gave_up = False
        pool = self._hooks.config.pool
        limit = time.monotonic() + pool.timeout
        if handle is not None and handle.deadline is not None:
            limit = min(limit, handle.deadline)
        try:
            while True:
                DeadlinePool._until.value = min(limit, time.monotonic() + CHECKOUT_SLICE_S)
                try:
                    return engine.connect()
                except sa_exc.TimeoutError:
                    pass
                if handle is not None and handle.stopped:
                    raise StatementStopped
                if time.monotonic() < limit:
                    continue
                if handle is not None and handle.deadline is not None and limit >= handle.deadline:
                    while handle.expire() is None:  # its lock is busy only for an instant here
                        pass
                    raise StatementStopped  # the deadline passed while waiting: a query timeout
                gave_up = True
                name = self._hooks.name
                raise PoolExhaustedError(
                    f"{name}: no connection free in pool {self._hooks.pool_name!r} "
                    f"(size={pool.size}, max_overflow={pool.max_overflow}) after waiting "
                    f"pool.timeout={pool.timeout:g}s",
                    engine=name,
                )
        except (ComputeError, StatementStopped):
            raise
        except Exception as exc:
            raise self._hooks.connection_error(exc, "cannot connect") from self._hooks.driver_cause(exc)
        finally:
            DeadlinePool._until.value = None
            tracker.wait_ended(time.perf_counter() - started, gave_up=gave_up)


def _send_through(engine: Engine, before: BeforeExecute) -> None:
    """Every statement goes to the driver through ``before`` (the query's last check and its
    comment), as the dialect's ``do_execute*`` events, which then call the dialect themselves.

    Not a ``before_cursor_execute`` listener: any engine-level connection event makes SQLAlchemy
    join the dispatchers of every connection and fire all its connection events on each
    statement, about 70 Python calls per query; the dialect's events are fired anyway (``do_connect``
    is listened to).
    """
    dialect = engine.dialect
    execute, no_params, many = dialect.do_execute, dialect.do_execute_no_params, dialect.do_executemany

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        statement, parameters = before(context.root_connection, cursor, statement, parameters, context, False)
        execute(cursor, statement, parameters, context)
        return True

    def do_execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
        statement, _ = before(context.root_connection, cursor, statement, None, context, False)
        no_params(cursor, statement, context)
        return True

    def do_executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        statement, parameters = before(context.root_connection, cursor, statement, parameters, context, True)
        many(cursor, statement, parameters, context)
        return True

    event.listen(engine, "do_execute", do_execute)
    event.listen(engine, "do_execute_no_params", do_execute_no_params)
    event.listen(engine, "do_executemany", do_executemany)


def _on_pool_reset(dialect: Any, dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """Rollback-on-return, skipped right after a query's own commit or rollback: a second round
    trip to the engine for nothing. Other users of ``plugin.engine`` keep the usual rollback."""
    if record.info.pop(TRANSACTION_ENDED, False) or state.transaction_was_reset:
        return
    dialect.do_rollback(dbapi_connection)
