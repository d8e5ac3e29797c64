"""QueryResult: a lazy cursor over one query, holding one pooled connection until it is done.

Rows come straight from the DBAPI cursor in batches (tuples, no per-row SQLAlchemy processing), so
iterating costs little more than the driver's own ``fetchmany`` loop. Arrow batches come from the
engine's native reader when it has one, otherwise they are built from those row batches.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, CursorResult

from floe_compute.arrow import ArrowConversionError, RowBatchBuilder
from floe_compute.errors import ResourceLimitError
from floe_compute.timeouts import QueryHandle, QueryState

if TYPE_CHECKING:
    from types import TracebackType

    import pyarrow as pa

    from floe_compute.plugin import ComputePlugin, QueryContext

__all__ = ["QueryResult"]

Row = tuple[Any, ...]


class QueryResult:
    """Rows (tuples) or Arrow batches of one statement, fetched lazily.

    The deadline of the query keeps running while the caller iterates: it covers everything from
    ``execute()`` until the result is exhausted or closed. The connection goes back to the pool when
    the result is exhausted, closed, cancelled, timed out, failed or garbage-collected.
    """

    def __init__(
        self,
        plugin: ComputePlugin,
        context: QueryContext,
        connection: Connection | None,
        cursor: CursorResult[Any] | None,
        batch_size: int,
    ) -> None:
        self._plugin = plugin
        self._context = context
        self._connection = connection
        self._cursor = cursor
        self._batch_size = batch_size
        self._rows = 0
        self._buffer: list[Row] = []
        self._buffer_pos = 0
        self._exhausted = cursor is None or not cursor.returns_rows
        self.columns: list[str] = list(cursor.keys()) if cursor is not None and cursor.returns_rows else []
        """Column names, in order."""
        if self._exhausted:
            self._release(None)

    @property
    def query_id(self) -> str:
        return self._context.query_id

    @property
    def rowcount(self) -> int:
        """Rows delivered to the caller so far."""
        return self._rows

    @property
    def handle(self) -> QueryHandle:
        return self._context.handle

    @property
    def closed(self) -> bool:
        return self._connection is None

    # -- rows -------------------------------------------------------------------------------

    def _fetch_batch(self, size: int) -> list[Row]:
        """Up to ``size`` rows from the driver; [] and the connection released at the end."""
        if self._exhausted:
            return []
        self._check_running()
        cursor = self._cursor
        assert cursor is not None
        try:
            # The strategy hands out raw DBAPI rows and drains what SQLAlchemy pre-buffered for
            # server-side cursors; ``fetchmany`` on the DBAPI cursor alone would skip those rows.
            rows = cursor.cursor_strategy.fetchmany(cursor, cursor.cursor, size)
        except BaseException as exc:
            raise self._fail(exc)  # noqa: B904 - chained by _fail
        if not rows:
            self._exhausted = True
            self._release(None)
            return []
        self._deliver(len(rows))
        return rows  # type: ignore[no-any-return]

    def _deliver(self, count: int) -> None:
        limit = self._context.max_rows
        if limit is not None and self._rows + count > limit:
            error = ResourceLimitError(
                f"{self._plugin.name}: query {self.query_id} ({self._context.summary}) returns "
                f"more than limits.max_result_rows={limit} rows",
                engine=self._plugin.name,
                query_id=self.query_id,
                statement=self._context.summary,
            )
            error.limit = "max_result_rows"
            self._release(error)
            raise error
        self._rows += count

    def __iter__(self) -> Iterator[Row]:
        # chain() walks each batch in C: no Python frame per row, only one call per batch
        head = self._take_buffer(len(self._buffer))
        size = self._batch_size
        batches: Iterator[list[Row]] = iter(lambda: self._fetch_batch(size), [])
        return itertools.chain(head, itertools.chain.from_iterable(batches))

    def _take_buffer(self, n: int) -> list[Row]:
        rows = self._buffer[self._buffer_pos : self._buffer_pos + n]
        self._buffer_pos += len(rows)
        return rows

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Up to ``size`` rows (default: the batch size); [] when the result is exhausted."""
        size = size or self._batch_size
        rows = self._take_buffer(size)
        if len(rows) < size and not self._exhausted:
            rows.extend(self._fetch_batch(size - len(rows)))
        return rows

    def fetchone(self) -> Row | None:
        if self._buffer_pos >= len(self._buffer):
            self._buffer = self._fetch_batch(self._batch_size)
            self._buffer_pos = 0
        rows = self._take_buffer(1)
        return rows[0] if rows else None

    def fetchall(self) -> list[Row]:
        rows = self._take_buffer(len(self._buffer))
        while batch := self._fetch_batch(self._batch_size):
            rows.extend(batch)
        return rows

    # -- arrow ------------------------------------------------------------------------------

    def arrow_batches(self, batch_size: int | None = None) -> pa.RecordBatchReader:
        """A standard ``pyarrow.RecordBatchReader`` over the rest of the result."""
        import pyarrow as pa  # imported on first use: row-only services don't pay ~40 MB for it

        size = batch_size or self._batch_size
        native = None
        if not self._exhausted and self._rows == 0 and self._buffer_pos >= len(self._buffer):
            assert self._cursor is not None
            self._check_running()
            try:
                native = self._plugin.arrow_reader(self._cursor.cursor, size)
            except BaseException as exc:
                raise self._fail(exc)  # noqa: B904 - chained by _fail
        if native is not None:
            return pa.RecordBatchReader.from_batches(native.schema, self._native_batches(native))
        builder = RowBatchBuilder.for_cursor(
            self._plugin, self._cursor.cursor if self._cursor else None, self.columns
        )
        first = [] if builder.schema is not None else self.fetchmany(size)
        schema = builder.infer(first)
        return pa.RecordBatchReader.from_batches(schema, self._built_batches(builder, first, size))

    def _native_batches(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        batches = iter(reader)
        while True:
            self._check_running()
            try:
                batch = next(batches, None)
            except BaseException as exc:
                raise self._fail(exc)  # noqa: B904 - chained by _fail
            if batch is None:
                self._exhausted = True
                self._release(None)
                return
            self._deliver(batch.num_rows)
            yield batch

    def _built_batches(
        self, builder: RowBatchBuilder, first: list[Row], size: int
    ) -> Iterator[pa.RecordBatch]:
        rows = first or self.fetchmany(size)
        while rows:
            try:
                batch = builder.build(rows)
            except ArrowConversionError as exc:  # a QueryError naming the column
                raise self._fail(exc)  # noqa: B904 - chained by _fail
            yield batch
            rows = self.fetchmany(size)

    def to_arrow(self) -> pa.Table:
        """The rest of the result as one ``pyarrow.Table``."""
        return self.arrow_batches().read_all()

    # -- lifecycle --------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._context.handle.state is not QueryState.RUNNING:
            raise self._fail(None)

    def _fail(self, exc: BaseException | None) -> BaseException:
        """Translate a failure (or a timeout/cancel seen between fetches), and let go."""
        error = self._plugin._query_error(exc, self._context)
        self._release(error)
        return error

    def _release(self, error: BaseException | None) -> None:
        connection, self._connection = self._connection, None
        self._cursor_done()
        if connection is not None:
            self._plugin._finish_query(self._context, connection, error, self._rows)

    def _cursor_done(self) -> None:
        self._exhausted = True
        self._buffer = []
        self._buffer_pos = 0

    def cancel(self) -> None:
        """Stop the query on the engine; its reader gets :class:`QueryCancelledError`.

        Safe to call from any thread; does nothing if the query has already ended.
        """
        self._context.handle.cancel()

    def close(self) -> None:
        """Discard the rest of the result and give the connection back."""
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
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_connection", None) is not None:
            warnings.warn(
                f"QueryResult {self.query_id} was not closed; closing it now. "
                "Use 'with plugin.execute(...) as result:' or call close().",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            with contextlib.suppress(Exception):  # nothing may escape a finalizer
                self._release(None)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<QueryResult {self.query_id} {self._context.summary!r} {state} rows={self._rows}>"
