"""PostgreSQL results as Arrow through ``COPY (query) TO STDOUT (FORMAT csv)``.

Why COPY and CSV: fetching rows makes psycopg build a Python object per value, which costs about
as much as the query; ``COPY`` streams the server's text form, and pyarrow's C++ CSV parser turns it
into columns with the types the query's description gives (``quoted_strings_can_be_null=False``
keeps NULL, an unquoted empty field, apart from the empty string ``""``). The stream is read at the
libpq level (``PGconn.get_copy_data``), one call per row and no Python object per value; psycopg's
``Copy.read()`` costs several times more per row.

The COPY runs on the query's own pooled connection, in its transaction (the statement timeout set
by ``begin_query`` applies), and the watchdog's cancel request stops it on the server. A COPY left
unfinished (result closed early, row limit, failure) is cancelled and drained by :func:`stop`
before the transaction ends, so the connection goes back to the pool clean.
"""

from __future__ import annotations

import itertools
import re
import select
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from floe_compute.arrow import ArrowConversionError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CopySource", "copy_reader", "stop"]

CANCEL_TIMEOUT_S = 1.0
_CSV_COLUMN = re.compile(r"CSV column #(\d+)")
_ACTIVE: dict[int, _CopyStream] = {}
"""The unfinished COPY of each connection (by ``id()``), for :func:`stop`."""
_ACTIVE_LOCK = threading.Lock()
_SESSION = "SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL extra_float_digits = 1; "
"""The text forms the CSV parser expects, whatever the session set (ends with the transaction)."""


class CopySource(psycopg.ServerCursor):
    """A server-side cursor that remembers its statement, so it can be re-run as a COPY."""

    __slots__ = ("floe_source",)

    floe_source: tuple[str, Any] | None


def copy_reader(
    cursor: Any, batch_size: int, arrow_types: Sequence[pa.DataType | None], names: Sequence[str]
) -> pa.RecordBatchReader | None:
    """An Arrow reader over the cursor's query run as a COPY, or None (rows then).

    Only a declared cursor nothing was fetched from qualifies (the query has not started: DECLARE
    only plans it), and only when every column has a type the CSV parser reads.
    """
    import pyarrow as pa

    source = getattr(cursor, "floe_source", None)
    if source is None or cursor.rownumber != 0 or not all(_csv_readable(t) for t in arrow_types):
        return None
    statement, params = source
    connection: psycopg.Connection[Any] = cursor.connection
    # client-side binding: COPY takes no bind parameters
    query = psycopg.ClientCursor(connection).mogrify(statement, params)
    sql = f"{_SESSION}COPY (\n{query}\n) TO STDOUT (FORMAT csv, ENCODING 'UTF8')"
    cursor.close()  # CLOSE the declared portal: the COPY runs the query instead
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, arrow_types, strict=True)])
    return pa.RecordBatchReader.from_batches(schema, _batches(connection, sql, schema, batch_size))


def _csv_readable(arrow_type: pa.DataType | None) -> bool:
    import pyarrow as pa

    if arrow_type is None or isinstance(arrow_type, pa.ExtensionType):
        return False
    types = pa.types
    return bool(
        types.is_integer(arrow_type)
        or types.is_floating(arrow_type)
        or types.is_decimal(arrow_type)
        or types.is_string(arrow_type)
        or types.is_boolean(arrow_type)
        or types.is_date32(arrow_type)
        or types.is_time64(arrow_type)
        or types.is_timestamp(arrow_type)
    )


def _batches(
    connection: psycopg.Connection[Any], sql: str, schema: pa.Schema, batch_size: int
) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    positional = [f"c{i}" for i in range(len(schema))]
    convert = pacsv.ConvertOptions(
        column_types=dict(zip(positional, schema.types, strict=True)),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    parse = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)  # NULL, one column
    stream = _CopyStream(connection)
    try:
        stream.start(sql)
        while True:
            data, rows = stream.read(batch_size)
            if not rows:
                return
            read = pacsv.ReadOptions(column_names=positional, block_size=max(len(data) + 1, 1 << 20))
            try:
                table = pacsv.read_csv(pa.py_buffer(data), read, parse, convert)
            except pa.ArrowInvalid as exc:
                raise _conversion_error(exc, schema) from exc
            columns = [column.combine_chunks() for column in table.columns]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)
    finally:
        stream.close()


def _conversion_error(exc: Exception, schema: pa.Schema) -> Exception:
    found = _CSV_COLUMN.search(str(exc))
    if found is None or int(found.group(1)) >= len(schema):
        return exc
    field = schema.field(int(found.group(1)))
    return ArrowConversionError(field.name, field.type)


def stop(connection: Any) -> None:
    """Cancel and drain the unfinished COPY of this connection, if any (before its transaction ends)."""
    connection = getattr(connection, "dbapi_connection", connection)  # the pool's proxy: the driver's
    with _ACTIVE_LOCK:
        stream = _ACTIVE.get(id(connection))
    if stream is not None and stream.connection is connection:
        stream.close()


class _CopyStream:
    """One ``COPY ... TO STDOUT`` on a connection, driven through libpq's non-blocking calls."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self._pgconn = connection.pgconn
        self._encoding = connection.info.encoding
        self._lock = threading.Lock()
        self._running = False

    def start(self, sql: str) -> None:
        pgconn = self._pgconn
        with _ACTIVE_LOCK:
            _ACTIVE[id(self.connection)] = self
        self._running = True
        pgconn.send_query(sql.encode(self._encoding))
        while pgconn.flush():
            self._wait(write=True)
        error: psycopg.Error | None = None
        while (result := self._result()) is not None:
            if result.status == pq.ExecStatus.COPY_OUT:
                return
            if result.status != pq.ExecStatus.COMMAND_OK and error is None:
                error = psycopg.errors.error_from_result(result, encoding=self._encoding)
        self._finished()
        raise error or psycopg.ProgrammingError("the COPY did not start")

    def read(self, max_rows: int) -> tuple[bytearray, int]:
        """The CSV lines of up to ``max_rows`` rows (the server sends one message per row).

        The hot loop of the Arrow path: one libpq call and one copy per row.
        """
        get = self._pgconn.get_copy_data
        data = bytearray()  # each row's libpq buffer is copied and freed at once
        rows = 0
        with self._lock:
            if not self._running:
                return data, 0
            for _ in itertools.repeat(None, max_rows):
                size, line = get(1)
                if size <= 0:
                    while size == 0:
                        self._wait()
                        self._pgconn.consume_input()
                        size, line = get(1)
                    if size < 0:
                        self._end(size)
                        break
                data += line
                rows += 1
        return data, rows

    def _end(self, size: int) -> None:
        error: psycopg.Error | None = None
        if size == -2:
            error = psycopg.OperationalError(self._pgconn.get_error_message(self._encoding))
        while (result := self._result()) is not None:
            if result.status != pq.ExecStatus.COMMAND_OK and error is None:
                error = psycopg.errors.error_from_result(result, encoding=self._encoding)
        self._finished()
        if error is not None:
            raise error

    def close(self) -> None:
        """Stop an unfinished COPY: a cancel request, then read what the server still sends."""
        with self._lock:
            if not self._running:
                return
            try:
                self.connection.cancel_safe(timeout=CANCEL_TIMEOUT_S)
                while self._running:
                    size, _ = self._pgconn.get_copy_data(1)
                    if size == 0:
                        self._wait()
                        self._pgconn.consume_input()
                    elif size < 0:
                        self._end(size)
            except psycopg.Error:
                pass  # the expected "canceling statement"; a broken connection fails its rollback
            finally:
                self._finished()

    def _finished(self) -> None:
        self._running = False
        with _ACTIVE_LOCK:
            if _ACTIVE.get(id(self.connection)) is self:
                del _ACTIVE[id(self.connection)]

    def _result(self) -> pq.abc.PGresult | None:
        pgconn = self._pgconn
        while pgconn.is_busy():
            self._wait()
            pgconn.consume_input()
        return pgconn.get_result()

    def _wait(self, write: bool = False) -> None:
        fd = self._pgconn.socket
        if write:
            select.select([fd], [fd], [])
        else:
            select.select([fd], [], [])
