"""One ``COPY ... TO STDOUT (FORMAT csv)`` driven through libpq's non-blocking calls, read into
Arrow record batches by pyarrow's CSV parser (``_postgres_copy`` says why COPY and CSV).

The driver's connection holds its unfinished COPY (``floe_copy_stream``) from :meth:`CopyStream.start`
until the stream ends, so that the transaction's end can cancel and drain it first.
"""

from __future__ import annotations

import itertools
import re
import select
import threading
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from floe_compute.arrow import ArrowConversionError
from floe_compute.engines import _postgres_values

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CANCEL_TIMEOUT_S", "CopyStream"]

CANCEL_TIMEOUT_S = 1.0
_CSV_COLUMN = re.compile(r"CSV column #(\d+)")


class CopyStream:
    """One ``COPY ... TO STDOUT`` on a connection, driven through libpq's non-blocking calls."""

    def __init__(self, connection: psycopg.Connection[Any], schema: pa.Schema, clamp: bool = False) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self.connection = connection
        self.schema = schema
        self._names = [f"c{i}" for i in range(len(schema))]  # result columns may share a name
        # infinity clamped: dates and timestamps read as text, clamped, then typed
        temporal = (pa.types.is_date32, pa.types.is_timestamp)
        self._clamped = {i for i, t in enumerate(schema.types) if clamp and any(f(t) for f in temporal)}
        types = [pa.string() if i in self._clamped else t for i, t in enumerate(schema.types)]
        self._convert = pacsv.ConvertOptions(
            column_types=dict(zip(self._names, types, strict=True)),
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        )
        # an empty line is a NULL when there is one column
        self._parse = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
        self._pgconn = connection.pgconn
        self._encoding = connection.info.encoding
        self._lock = threading.Lock()
        self._running = False

    def start(self, sql: str) -> None:
        pgconn = self._pgconn
        self.connection.floe_copy_stream = self  # type: ignore[attr-defined]
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

    def next_batch(self, max_rows: int) -> pa.RecordBatch | None:
        """The next up to ``max_rows`` rows as a record batch; None at the end."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        data, rows = self.read(max_rows)
        if not rows:
            return None
        read = pacsv.ReadOptions(column_names=self._names, block_size=max(len(data) + 1, 1 << 20))
        try:
            table = pacsv.read_csv(pa.py_buffer(data), read, self._parse, self._convert)
        except pa.ArrowInvalid as exc:
            raise _conversion_error(exc, self.schema) from exc
        columns = [column.combine_chunks() for column in table.columns]
        for i in self._clamped:
            field = self.schema.field(i)
            try:
                columns[i] = _postgres_values.clamp_text(columns[i], field.type)
            except pa.ArrowInvalid as exc:
                raise ArrowConversionError(field.name, field.type) from exc
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

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
        if getattr(self.connection, "floe_copy_stream", None) is self:
            self.connection.floe_copy_stream = None  # type: ignore[attr-defined]

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


def _conversion_error(exc: Exception, schema: pa.Schema) -> Exception:
    found = _CSV_COLUMN.search(str(exc))
    if found is None or int(found.group(1)) >= len(schema):
        return exc
    field = schema.field(int(found.group(1)))
    infinite = "'infinity'" in str(exc) or "'-infinity'" in str(exc)
    return ArrowConversionError(field.name, field.type, _postgres_values.INFINITY_HINT if infinite else "")
