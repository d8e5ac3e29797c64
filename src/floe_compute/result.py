"""QueryResult: a lazy cursor over one query, holding one pooled connection until it is done.

Rows come straight from the DBAPI cursor in batches (tuples, no per-row SQLAlchemy processing), so
iterating costs little more than the driver's own ``fetchmany`` loop. Arrow batches come from the
engine's native reader when it has one, otherwise they are built from those row batches.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import warnings
from _thread import RLock
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.engine.cursor import CursorFetchStrategy

from floe_compute.errors import ResourceLimitError
from floe_compute.result_arrow import ArrowReading
from floe_compute.result_helpers import ResultHelpers
from floe_compute.timeouts import QueryHandle

if TYPE_CHECKING:
    from types import TracebackType

    from floe_compute.context import QueryContext
    from floe_compute.lifecycle import QueryLifecycle, Started

__all__ = ["QueryResult", "result_of"]

T = TypeVar("T")

Row = tuple[Any, ...]


class QueryResult(ArrowReading, ResultHelpers):
    """Rows (plain tuples; ``mappings()`` for dicts) or Arrow batches of one statement, fetched lazily.

    The deadline of the query keeps running while the caller iterates: it covers everything from
    ``execute()`` until the result is exhausted or closed. The connection goes back to the pool when
    the result is closed, cancelled, timed out, failed or garbage-collected, and a read's also when
    it is exhausted: a statement that changed data commits only on ``close()`` (or at the end of a
    ``with`` block without an exception), never because its rows were read. A result
    closed before its last row (by another thread, or by ``disconnect()``) never looks complete:
    reading it raises instead of returning fewer rows.
    """

    def __init__(
        self,
        lifecycle: QueryLifecycle,
        context: QueryContext,
        connection: Connection | None,
        cursor: CursorResult[Any] | None,
        batch_size: int | None,
        *,
        writes: bool = False,
    ) -> None:
        self._lifecycle = lifecycle
        self._hooks = lifecycle.hooks
        self._writes = writes
        self._context = context
        self._connection = connection
        self._cursor = cursor
        self._batch_size = batch_size or lifecycle.hooks.default_batch_size
        self._fetched = 0
        self._buffer: list[Row] = []
        self._buffer_pos = 0
        self._current: Iterator[Row] | None = None
        self._lock = RLock()  # threading.RLock() is a Python call returning this
        self._exhausted = cursor is None or not cursor.returns_rows
        self._columns: list[str] | None = None

    @property
    def columns(self) -> list[str]:
        """Column names, in order (made when first asked: most reads never ask)."""
        if self._columns is None:
            cursor = self._cursor
            self._columns = list(cursor.keys()) if cursor is not None and cursor.returns_rows else []
        return self._columns

    @property
    def query_id(self) -> str:
        return self._context.query_id

    @property
    def rowcount(self) -> int:
        """Rows handed to the caller so far."""
        pending = len(self._buffer) - self._buffer_pos
        current = self._current
        if current is not None:
            pending += operator.length_hint(current)
        return self._fetched - pending

    @property
    def batch_size(self) -> int:
        """Rows per driver fetch."""
        return self._batch_size

    @property
    def buffered(self) -> int:
        """Rows already fetched and not yet handed out: reading them needs no driver call."""
        return len(self._buffer) - self._buffer_pos

    @property
    def handle(self) -> QueryHandle:
        return self._context.handle

    @property
    def closed(self) -> bool:
        return self._connection is None

    # -- rows -------------------------------------------------------------------------------

    def _fetch_batch(self, size: int, *, short_ends: bool = True) -> list[Row]:
        """Up to ``size`` rows from the driver; [] and the connection released at the end, or
        already with fewer rows than asked where the engine says that is the end (unless
        ``short_ends`` is False: the caller still has work that may fail with these rows)."""
        if self._exhausted:
            return []
        with self._lock:
            if self._connection is None:
                raise self._closed_error()
            if self._context.handle.stopped:
                raise self._fail(None)
            rows, failed = self._fetch_rows(size)
            if failed is not None and self._fetched == 0 and self._rerun(failed):
                rows, failed = self._fetch_rows(size)
            if failed is not None:
                raise self._fail(failed)  # not chained to the driver's error
            if not rows:
                self._end()
                return []
            self._deliver(len(rows))
            if short_ends and len(rows) < size and self._hooks.short_batch_ends:
                self._end()
            return rows

    def _fetch_rows(self, size: int) -> tuple[list[Row], BaseException | None]:
        """Rows from the driver, or the exception it raised (handled outside its except block)."""
        cursor = self._cursor
        assert cursor is not None
        context = self._context
        token = None if context.span is None else self._lifecycle.telemetry.enter(context)
        try:
            return self._driver_fetchmany(cursor, size), None
        except BaseException as exc:
            return [], exc
        finally:
            if token is not None:
                self._lifecycle.telemetry.leave(token)

    def _rerun(self, failed: BaseException) -> bool:
        """A read whose connection was lost before its first row: run again on a fresh one."""
        connection, self._connection = self._connection, None
        assert connection is not None
        try:
            retried = self._lifecycle.retry(self._context, connection, failed, 0)
        except BaseException:
            self._cursor_done()  # the query has ended with the retry's error
            raise
        if retried is None:
            self._connection = connection
            return False
        self._connection, self._cursor = retried
        return True

    @staticmethod
    def _driver_fetchmany(cursor: CursorResult[Any], size: int) -> list[Row]:
        """Raw DBAPI rows. A buffering strategy holds rows SQLAlchemy pre-fetched for server-side
        cursors and must hand them out first; otherwise the driver is called directly, which also
        keeps SQLAlchemy's error events (and instrumentations listening to them) out of a fetch
        that our own error handling covers."""
        strategy = cursor.cursor_strategy
        if type(strategy) is CursorFetchStrategy:
            return cursor.cursor.fetchmany(size)  # type: ignore[return-value]
        return strategy.fetchmany(cursor, cursor.cursor, size)  # type: ignore[no-any-return]

    def _deliver(self, count: int) -> None:
        limit = self._context.max_rows
        if limit is not None and self._fetched + count > limit:
            error = self._context.error(
                self._hooks.name,
                f"{self._hooks.name}: query {self.query_id} ({self._context.summary}) returns "
                f"more than limits.max_result_rows={limit} rows",
                ResourceLimitError,
            )
            error.limit = "max_result_rows"
            self._release(error)
            raise error
        self._fetched += count

    def __iter__(self) -> Iterator[Row]:
        # chain() walks each batch in C: no Python frame per row, only one call per batch
        head = self._current = iter(self._take_buffer(len(self._buffer) - self._buffer_pos))
        batches: Iterator[Iterator[Row] | None] = iter(self._next_batch_iterator, None)
        return itertools.chain(head, itertools.chain.from_iterable(batches))  # type: ignore[arg-type]

    def _next_batch_iterator(self) -> Iterator[Row] | None:
        rows = self._fetch_batch(self._batch_size)
        self._current = iter(rows) if rows else None
        return self._current

    def _take_buffer(self, n: int) -> list[Row]:
        rows = self._buffer[self._buffer_pos : self._buffer_pos + n]
        self._buffer_pos += len(rows)
        return rows

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Up to ``size`` rows (default: the batch size); [] when the result is exhausted."""
        return self._next_rows(size or self._batch_size)

    def _next_rows(self, size: int, *, short_ends: bool = True) -> list[Row]:
        rows = self._take_buffer(size)
        if len(rows) < size and not self._exhausted:
            rows.extend(self._fetch_batch(size - len(rows), short_ends=short_ends))
        return rows

    def fetchone(self) -> Row | None:
        if self._buffer_pos >= len(self._buffer):
            self._buffer = self._fetch_batch(self._batch_size)
            self._buffer_pos = 0
        rows = self._take_buffer(1)
        return rows[0] if rows else None

    def fetchall(self) -> list[Row]:
        rows = self._take_buffer(len(self._buffer) - self._buffer_pos)
        while not self._exhausted and (batch := self._fetch_batch(self._batch_size)):
            rows.extend(batch)
        return rows

    # -- lifecycle --------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._context.handle.stopped:
            raise self._fail(None)

    def _fail(self, exc: BaseException | None) -> BaseException:
        """Translate a failure (or a timeout/cancel seen between fetches), and let go."""
        connection = self._connection
        if connection is None:
            return self._closed_error()
        self._connection = None
        self._cursor_done()
        return self._lifecycle.fail(self._context, connection, exc, self.rowcount)

    def _closed_error(self) -> BaseException:
        """Reading a result released before its last row: never a silent, short result."""
        if self._context.handle.stopped:
            return self._lifecycle.query_error(None, self._context)
        return self._context.error(
            self._hooks.name,
            f"{self._hooks.name}: query {self.query_id} ({self._context.summary}): the result was "
            f"closed after {self.rowcount} rows, before all its rows were read",
        )

    def _end(self) -> None:
        """The last row was read: a read lets go of its connection; a write keeps its transaction
        for ``close()``, so that a block failing after the read still rolls it back."""
        self._exhausted = True
        if not self._writes:
            self._release(None)

    def _release(self, error: BaseException | None, *, rollback: bool = False) -> None:
        connection, self._connection = self._connection, None
        self._cursor_done()
        if connection is not None:
            self._lifecycle.finish(self._context, connection, error, self.rowcount, rollback=rollback)

    def _cursor_done(self) -> None:
        self._buffer = []
        self._buffer_pos = 0
        self._current = None

    def cancel(self) -> None:
        """Stop the query on the engine; its reader gets :class:`QueryCancelledError`.

        Safe to call from any thread; does nothing if the query has already ended.
        """
        self._context.handle.cancel()

    def close(self) -> None:
        """Discard the rest of the result and give the connection back (committing the statement).

        From another thread it waits for a batch being fetched; the reader then gets an error
        saying that the result was closed.
        """
        if self._connection is not None:
            with self._lock:
                if self._connection is not None:
                    self._release(None)

    def __enter__(self) -> QueryResult:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abandon()  # the block failed: nothing is committed

    def abandon(self) -> None:
        """Roll back and give the connection back: the caller failed or was cancelled."""
        if self._connection is not None:
            with self._lock:
                if self._connection is not None:
                    self._release(None, rollback=True)

    def __del__(self) -> None:
        if getattr(self, "_connection", None) is None:
            return
        with contextlib.suppress(Exception):  # nothing may escape a finalizer
            # nobody closed it: the code holding it may have failed, so nothing is committed
            self._release(None, rollback=True)
        # released first: a warning turned into an error must not keep the connection
        warnings.warn(
            f"QueryResult {self.query_id} was not closed; it was rolled back and released when "
            "garbage-collected. Use 'with plugin.execute(...) as result:' or call close().",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<QueryResult {self.query_id} {self._context.summary!r} {state} rows={self.rowcount}>"


def result_of(lifecycle: QueryLifecycle, started: Started) -> QueryResult:
    """The lazy result of a statement the lifecycle started."""
    return QueryResult(
        lifecycle,
        started.context,
        started.connection,
        started.cursor,
        started.batch_size,
        writes=started.writes,
    )
