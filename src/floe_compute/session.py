"""Sessions: several statements on one engine session, and transactions over them.

A session checks out one pooled connection (the engine's session: a DuckDB cursor, a PostgreSQL
backend, a Snowflake or Thrift session) and keeps it for its block, so that a temp table or a
``SET`` holds from one statement to the next. Each statement goes through the same query
lifecycle as ``execute()`` (its own id, deadline, span, cancel), without a checkout or a release;
outside a transaction it commits as ``execute()`` does. At the end the engine clears the
connection (``end_session``) or it is closed, so nothing the session left is seen by anybody else.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from floe_compute.context import Params, SessionPin
from floe_compute.errors import ConnectionFailedError, QueryError, QueryTimeoutError, SessionError
from floe_compute.errors import driver_message as _driver_message
from floe_compute.params import check_params
from floe_compute.prepare import new_query_id
from floe_compute.result import QueryResult, result_of
from floe_compute.units import check_timeout

if TYPE_CHECKING:
    from concurrent.futures import Future
    from types import TracebackType

    from sqlalchemy.engine import Connection
    from sqlalchemy.sql.base import Executable

    from floe_compute.aio import AsyncExecution
    from floe_compute.hooks import EngineHooks
    from floe_compute.lifecycle import QueryLifecycle
    from floe_compute.workers import Workers

__all__ = ["OpenSessions", "Session"]

END_WAIT_S = 5.0
"""How long ending a session waits for a statement of another thread (being cancelled) to let go."""


class OpenSessions:
    """The sessions of one plugin that hold a connection, for ``disconnect()`` to end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[Session] = weakref.WeakSet()

    def add(self, session: Session) -> None:
        with self._lock:
            self._open.add(session)

    def remove(self, session: Session) -> None:
        with self._lock:
            self._open.discard(session)

    def end_all(self) -> None:
        """End every open session, rolling back its open transaction."""
        with self._lock:
            sessions = list(self._open)
        for session in sessions:
            session.close(rollback=True)


class Session:
    """One engine session for a block: ``with compute.session() as s:`` (or ``async with``).

    ``s.execute()`` / ``await s.aexecute()`` take the plugin's arguments; ``s.transaction()``
    commits its statements together. A statement's result still open when the next statement (or
    a transaction) starts is closed first, committing it outside a transaction. One thread at a
    time: a second thread gets a :class:`SessionError`, never a shared connection.
    """

    def __init__(
        self,
        lifecycle: QueryLifecycle,
        *,
        checkout: Callable[[], Connection],
        workers: Callable[[], Workers],
        sessions: OpenSessions,
        timeout: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._hooks = lifecycle.hooks
        self._checkout = checkout
        self._workers = workers
        self._sessions = sessions
        self.timeout = check_timeout(timeout, "session timeout")
        self.tags: dict[str, str] = dict(tags or {})
        self.session_id = f"s-{uuid.uuid4().hex[:16]}"
        self._deadline: float | None = None
        self._pin: SessionPin | None = None
        self._opened = False
        self._result: QueryResult | None = None
        self._lock = threading.Lock()
        self._letting_go: Future[Any] | None = None  # a cancelled statement's worker call

    # -- the block ---------------------------------------------------------------------------

    def open(self) -> Session:
        """Check out the session's connection (``with`` does it)."""
        if self._opened:
            raise SessionError(self._message("is already open"), engine=self._hooks.name)
        if self.timeout is not None:
            self._deadline = time.monotonic() + self.timeout
        self._pin = SessionPin(self.session_id, self._checkout())
        self._opened = True
        self._sessions.add(self)
        return self

    def close(self, *, rollback: bool = False) -> None:
        """End the session: settle its last result, roll back an open transaction, and clear (or
        close) its connection. ``rollback`` also rolls back a last write left open."""
        locked = self._lock.acquire(timeout=END_WAIT_S)
        try:
            pin, self._pin = self._pin, None
            if pin is None:
                return
            self._sessions.remove(self)
            result, self._result = self._result, None
            if result is not None and not result.settle(rollback=rollback):
                result.cancel()  # read by another thread: stop it, then roll it back
                result.abandon()
            connection = pin.connection
            with contextlib.suppress(Exception):
                if pin.in_transaction and not connection.invalidated:
                    pin.in_transaction = False
                    self._hooks.end_transaction(connection, pin, commit=False)
            _release(self._hooks, pin)
        finally:
            if locked:
                self._lock.release()

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(rollback=exc is not None)

    # -- statements ----------------------------------------------------------------------------

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
        """Run one statement in the session: as ``ComputePlugin.execute()``, on its connection."""
        with self._turn():
            pin = self._current()
            self._settle(rollback=False)
            started = self._lifecycle.start(
                sql,
                params,
                timeout=self._bounded(timeout),
                batch_size=batch_size,
                query_id=query_id,
                tags={**self.tags, **(tags or {})},
                arrow=arrow,
                session=pin,
            )
            result = result_of(self._lifecycle, started)
            self._result = result
            return result

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
        """:meth:`execute` for asyncio, as ``ComputePlugin.aexecute()``."""
        from floe_compute.aio import AsyncExecution

        check_params(sql, params, self._hooks.sql_dialect)
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
        return AsyncExecution(
            call, query_id, workers=self._workers(), running=self._lifecycle.running, on_stop=self._stopping
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """Commit the block's statements together at its end; roll them back on an exception.

        A statement that failed inside it (its exception caught) makes the end a rollback, and an
        error says so. Engines without transactions refuse it before anything runs.
        """
        self._begin_transaction()
        committed = False
        try:
            yield self
            committed = True
        finally:
            self._end_transaction(commit=committed)

    def _begin_transaction(self) -> None:
        hooks = self._hooks
        if not hooks.has_transactions:
            raise SessionError(
                f"{hooks.name}: {type(hooks).__name__} has no transactions (each statement is written "
                "as it runs): run the statements in the session without transaction()",
                engine=hooks.name,
            )
        with self._turn():
            pin = self._current()
            if pin.in_transaction:
                raise SessionError(self._message("already has an open transaction"), engine=hooks.name)
            self._settle(rollback=False)
            hooks.begin_transaction(pin.connection, pin)
            pin.in_transaction = True

    def _end_transaction(self, *, commit: bool) -> None:
        with self._turn(wait=END_WAIT_S):
            pin = self._pin
            if pin is None and commit:  # its caller must not believe the block committed
                raise SessionError(
                    self._message("has ended (by disconnect()): its transaction was rolled back"),
                    engine=self._hooks.name,
                )
            if pin is None or not pin.in_transaction:
                return
            self._settle(rollback=not commit)
            failed, pin.failed_in_transaction = pin.failed_in_transaction, None
            pin.in_transaction = False
            try:
                self._hooks.end_transaction(pin.connection, pin, commit=commit and failed is None)
            except Exception as exc:
                if not commit:
                    return  # the block's own exception is the one its caller hears of
                raise QueryError(
                    self._hooks.scrub(
                        self._message(f"could not commit its transaction: {_driver_message(exc)}")
                    ),
                    engine=self._hooks.name,
                ) from self._hooks.driver_cause(exc)
            if commit and failed is not None:
                raise QueryError(
                    self._message(f"rolled back its transaction: statement {failed} failed in it"),
                    engine=self._hooks.name,
                    query_id=failed,
                )

    # -- helpers -------------------------------------------------------------------------------

    def _stopping(self, call: Future[Any]) -> None:
        self._letting_go = call

    @contextlib.contextmanager
    def _turn(self, wait: float = 0.0) -> Iterator[None]:
        """The session for this thread's call; another thread in it now is an error, but for a
        statement whose task was cancelled: the next one waits for it to let go (as asyncpg's
        next command waits for a pending cancel)."""
        stopping = self._letting_go
        if stopping is not None and not stopping.done():
            wait = max(wait, END_WAIT_S)
        acquired = self._lock.acquire(timeout=wait) if wait else self._lock.acquire(blocking=False)
        if not acquired:
            raise SessionError(self._busy(), engine=self._hooks.name)
        try:
            yield
        finally:
            self._lock.release()

    def _busy(self) -> str:
        return self._message("is in use by another thread: a session runs one statement at a time")

    def _current(self) -> SessionPin:
        pin = self._pin
        if pin is None:
            state = "has ended (closed, or by disconnect())" if self._opened else "is not open"
            raise SessionError(
                self._message(f"{state}: use 'with compute.session() as s:'"), engine=self._hooks.name
            )
        if pin.connection.invalidated:
            raise ConnectionFailedError(
                self._message("lost its connection: its temp tables, settings and open transaction are gone"),
                engine=self._hooks.name,
            )
        return pin

    def _settle(self, *, rollback: bool) -> None:
        """Close the previous statement's result (committing it outside a transaction)."""
        result, self._result = self._result, None
        if result is None or result.closed:
            return
        if not result.settle(rollback=rollback):
            self._result = result
            raise SessionError(self._busy(), engine=self._hooks.name)

    def _bounded(self, timeout: float | None) -> float | None:
        """The statement's timeout, cut to what is left of the session's."""
        if self._deadline is None:
            return timeout
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise QueryTimeoutError(
                self._message(f"ran past its timeout={self.timeout:g}s: no statement runs in it any more"),
                engine=self._hooks.name,
            )
        own = check_timeout(timeout)
        own = self._hooks.config.timeouts.query if own is None else own
        return min(own if own is not None else math.inf, left)

    def _message(self, what: str) -> str:
        return f"{self._hooks.name}: session {self.session_id} {what}"

    # -- asyncio -------------------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self._on_worker(self.open, "execute")  # a checkout may wait for a connection
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._on_worker(partial(self.close, rollback=exc is not None))

    @contextlib.asynccontextmanager
    async def atransaction(self) -> AsyncIterator[Session]:
        """:meth:`transaction` for asyncio; a cancelled task rolls it back."""
        await self._on_worker(self._begin_transaction)
        committed = False
        try:
            yield self
            committed = True
        finally:
            await self._on_worker(partial(self._end_transaction, commit=committed))

    async def _on_worker(self, call: Callable[[], Any], kind: str = "fetch") -> None:
        """A blocking call on a worker thread, carried through even if the task is cancelled."""
        import asyncio

        await asyncio.shield(asyncio.wrap_future(self._workers().submit(kind, call)))

    def __repr__(self) -> str:
        state = "open" if self._pin is not None else ("ended" if self._opened else "not open")
        return f"<Session {self.session_id} {state}>"


def _release(hooks: EngineHooks, pin: SessionPin) -> None:
    """Give a session's connection back cleared of the session's state, or close it."""
    connection, reusable = pin.connection, False
    if not connection.invalidated:
        with contextlib.suppress(Exception):
            connection.rollback()
            reusable = hooks.end_session(connection, pin)
        if not reusable:
            connection.invalidate()
    connection.close()
