"""Arrow batches of a query's result: the engine's own stream when it has one, else built from
the row batches with the engine's column types."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from floe_compute.arrow import ArrowConversionError, RowBatchBuilder

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection, CursorResult

    from floe_compute.context import QueryContext
    from floe_compute.hooks import EngineHooks
    from floe_compute.lifecycle import QueryLifecycle

__all__ = ["ArrowReading"]

T = TypeVar("T")

Row = tuple[Any, ...]


class ArrowReading:
    """The Arrow half of :class:`~floe_compute.result.QueryResult`: the same lock, deadline and
    release as its rows."""

    _lifecycle: QueryLifecycle
    _hooks: EngineHooks
    _context: QueryContext
    _connection: Connection | None
    _cursor: CursorResult[Any] | None
    _batch_size: int
    _fetched: int
    _exhausted: bool
    _lock: threading.RLock

    if TYPE_CHECKING:  # what QueryResult provides

        @property
        def columns(self) -> list[str]: ...

        def _next_rows(self, size: int, *, short_ends: bool = True) -> list[Row]: ...
        def _check_running(self) -> None: ...
        def _fail(self, exc: BaseException | None) -> BaseException: ...
        def _closed_error(self) -> BaseException: ...
        def _end(self) -> None: ...
        def _deliver(self, count: int) -> None: ...

    def _call_driver(self, call: Callable[[], T]) -> T:
        """One driver call of a fetch, the query's span current; a failure ends the query, and its
        error is raised outside the driver's ``except`` (so it does not chain the driver's text)."""
        token = self._lifecycle.telemetry.enter(self._context)
        try:
            return call()
        except BaseException as exc:
            failure = self._fail(exc)
        finally:
            self._lifecycle.telemetry.leave(token)
        raise failure

    def arrow_batches(self, batch_size: int | None = None) -> pa.RecordBatchReader:
        """A standard ``pyarrow.RecordBatchReader`` over the rest of the result."""
        import pyarrow as pa  # imported on first use: row-only services don't pay ~40 MB for it

        size = batch_size or self._batch_size
        native = None
        if not self._exhausted and self._fetched == 0 and self._connection is not None:
            assert self._cursor is not None
            with self._lock:
                self._check_running()
                cursor = self._cursor.cursor
                native = self._call_driver(lambda: self._hooks.arrow_reader(cursor, size))
        if native is not None:
            return pa.RecordBatchReader.from_batches(native.schema, self._native_batches(native))
        if self._connection is None and not self._exhausted:
            raise self._closed_error()
        builder = RowBatchBuilder.for_cursor(
            self._hooks.arrow_type, self._cursor.cursor if self._cursor else None, self.columns
        )
        first = [] if builder.schema is not None else self._next_rows(size, short_ends=False)
        schema = builder.infer(first)
        return pa.RecordBatchReader.from_batches(schema, self._built_batches(builder, first, size))

    def _native_batches(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        batches = iter(reader)
        while True:
            with self._lock:
                if self._connection is None:
                    raise self._closed_error()
                self._check_running()
                batch = self._call_driver(lambda: next(batches, None))
                if batch is None:
                    self._end()
                    return
                self._deliver(batch.num_rows)
            yield batch

    def _built_batches(
        self, builder: RowBatchBuilder, first: list[Row], size: int
    ) -> Iterator[pa.RecordBatch]:
        # the query ends with the next fetch, after these rows converted (or failed naming a column)
        rows = first or self._next_rows(size, short_ends=False)
        while rows:
            failure: BaseException | None = None
            try:
                batch = builder.build(rows)
            except ArrowConversionError as exc:  # a QueryError naming the column
                failure = self._fail(exc)
            if failure is not None:
                raise failure
            yield batch
            rows = self._next_rows(size, short_ends=False)

    def to_arrow(self) -> pa.Table:
        """The rest of the result as one ``pyarrow.Table``."""
        return self.arrow_batches().read_all()
