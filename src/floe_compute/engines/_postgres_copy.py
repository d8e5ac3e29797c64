"""PostgreSQL results as Arrow: each column's Arrow type (by type OID), and the COPY path.

``execute(..., arrow=True)`` runs a query as ``COPY (query) TO STDOUT (FORMAT csv)``.

Why COPY and CSV: fetching rows makes psycopg build a Python object per value, which costs several
times what Arrow readers take; ``COPY`` streams the server's text form, and pyarrow's C++ CSV parser turns it
into columns with the types the query's description gives (``quoted_strings_can_be_null=False``
keeps NULL, an unquoted empty field, apart from the empty string ``""``). The stream is read at the
libpq level (``PGconn.get_copy_data``), one call per row and no Python object per value; psycopg's
``Copy.read()`` cost about 2.5 times more per row when measured. PostgreSQL's binary COPY format
has no C++ parser in pyarrow; ADBC's driver would need connections of its own, outside the pool
and the query's transaction.

The COPY runs on the query's own pooled connection, in its transaction (the statement timeout set
by ``begin_query`` applies), and the watchdog's cancel request stops it on the server. A COPY left
unfinished (result closed early, row limit, failure) is cancelled and drained by
:func:`before_end` before the transaction ends, so the connection goes back to the pool clean.
The driver's connection holds its declared cursor (``floe_declared``) and its unfinished COPY
(``floe_copy_stream``) for that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from floe_compute.engines import _postgres_blocking, _postgres_declare, _postgres_values
from floe_compute.engines._postgres_copy_stream import CopyStream

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CopySource", "arrow_type", "before_end", "copy_reader", "declared"]

_SESSION = "SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL extra_float_digits = 1; "
"""The text forms the CSV parser expects, whatever the session set (ends with the transaction)."""


class CopySource(_postgres_values.NamesColumn, psycopg.ServerCursor):
    """A server-side cursor that can hand its query over to a COPY before it runs.

    The ``DECLARE`` plans the query and describes its columns without running it; nothing is
    fetched at ``execute()``. If the first read asks for Arrow (or ``execute(..., arrow=True)``
    said it would), :meth:`copy_unread` closes the portal and the same statement runs as a COPY,
    so it still runs once. Rows asked of the cursor afterwards come from the COPY's Arrow batches.
    """

    __slots__ = (
        "floe_copy",
        "floe_description",
        "floe_ended",
        "floe_fetch_from",
        "floe_fetched",
        "floe_source",
    )

    fetch_comment = ""
    """A comment ending each ``FETCH`` (a subclass with instance attributes sets one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # each one set (an unset slot read through getattr() raises and formats an error inside)
        self.floe_source: tuple[str, Any] | None = None
        """The statement and parameters as sent, recorded by the dialect's ``do_execute``."""
        self.floe_copy: CopyStream | None = None
        self.floe_description: Any = None
        self.floe_ended = False
        """The last ``FETCH`` came back short: the portal is at its end."""
        self.floe_fetched = False
        """A ``FETCH`` ran the portal: a COPY now would run the query again."""
        self.floe_fetch_from = b""
        """The end of its ``FETCH`` commands (its name and comment), made when first needed."""

    def copy_unread(self) -> bool:
        """Stream the query through a COPY unless a ``FETCH`` ran it already: True if it now
        streams from one (started here or before)."""
        if self.floe_copy is not None:
            return True
        if self.floe_fetched or self.closed:
            return False
        columns = self.description or ()
        types = [arrow_type(c.type_code, c.precision, c.scale) for c in columns]
        return self.start_copy(types, [c.name for c in columns])

    def _declare_gen(self, query: Any, params: Any = None, binary: bool | None = None) -> Any:
        return _postgres_declare.declare_gen(self, super()._declare_gen, query, params, binary)

    def _fetch_gen(self, num: int | None) -> Any:
        if self.floe_ended:
            return []  # the last FETCH came back short: the portal is at its end, no round trip
        self.floe_fetched = True  # the portal ran: a COPY now would run the query again
        rows = yield from _postgres_declare.fetch_gen(self, num)
        if num is None or len(rows) < num:
            self.floe_ended = True
        return rows

    def _fetch_now(self, num: int) -> list[Any]:
        """``fetchmany(num)`` on a thread that waits inside libpq, in plain calls."""
        if self.floe_ended:
            return []
        self.floe_fetched = True
        try:
            with self._conn.lock:
                rows = _postgres_declare.fetch_now(self, num)
        except psycopg.DataError as exc:
            raise _postgres_values.named(self, exc) from exc
        if len(rows) < num:
            self.floe_ended = True
        self._pos += len(rows)
        return rows

    def close(self) -> None:
        """A portal read to its end is dropped by the end of its transaction, which follows: no
        ``CLOSE`` round trip of its own."""
        if self.floe_ended and self.floe_copy is None:
            psycopg.Cursor.close(self)  # the client side only
            return
        super().close()

    def start_copy(self, arrow_types: Sequence[pa.DataType | None], names: Sequence[str]) -> bool:
        """Run the declared query as a COPY instead; False (nothing done) when the CSV parser
        cannot read one of its columns' types."""
        import pyarrow as pa

        source = self.floe_source
        if source is None or not names or not all(_csv_readable(t) for t in arrow_types):
            return False
        statement, params = source
        # client-side binding: COPY takes no bind parameters
        query = psycopg.ClientCursor(self.connection).mogrify(statement, params)
        schema = pa.schema([pa.field(n, t) for n, t in zip(names, arrow_types, strict=True)])
        self.floe_description = self.description
        self.close()  # CLOSE the declared portal: the COPY runs the query instead
        stream = CopyStream(self.connection, schema, _postgres_values.clamps_infinity(self.connection))
        self.floe_copy = stream
        stream.start(f"{_SESSION}COPY (\n{query}\n) TO STDOUT (FORMAT csv, ENCODING 'UTF8')")
        return True

    @property
    def description(self) -> Any:
        return super().description if self.floe_copy is None else self.floe_description

    def fetchmany(self, size: int = 0) -> list[Any]:
        copy: CopyStream | None = self.floe_copy
        if copy is None:
            text = self._format == pq.Format.TEXT
            if text and self._described and _postgres_blocking.plain_waits(self._conn):
                return self._fetch_now(size or self.arraysize)
            return super().fetchmany(size)
        batch = copy.next_batch(size or self.arraysize)
        if batch is None:
            return []
        return list(zip(*(column.to_pylist() for column in batch.columns), strict=True))


def copy_reader(cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
    """An Arrow reader over the cursor's COPY, if :meth:`CopySource.start_copy` started one."""
    import pyarrow as pa

    stream: CopyStream | None = getattr(cursor, "floe_copy", None)
    if stream is None:
        return None
    return pa.RecordBatchReader.from_batches(stream.schema, _batches(stream, batch_size))


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


def _batches(stream: CopyStream, batch_size: int) -> Iterator[pa.RecordBatch]:
    try:
        while (batch := stream.next_batch(batch_size)) is not None:
            yield batch
    finally:
        stream.close()


def declared(cursor: CopySource) -> None:
    """Remember the cursor just declared on its connection, for :func:`before_end`."""
    cursor.connection.floe_declared = cursor  # type: ignore[attr-defined]


def before_end(connection: Any, *, run_unread: bool) -> None:
    """Before the driver's connection ends its transaction: a cursor nobody read runs to its first
    row if ``run_unread`` (the statement of a result closed unread has run, as it did when
    ``execute()`` fetched one row), and an unfinished COPY is cancelled and drained."""
    cursor: CopySource | None = getattr(connection, "floe_declared", None)
    if cursor is not None:
        connection.floe_declared = None
        unread = not cursor.floe_fetched and cursor.floe_copy is None
        if run_unread and unread and not cursor.closed:
            cursor.scroll(1)  # a MOVE: runs the query up to its first row, fetches nothing
    stream: CopyStream | None = getattr(connection, "floe_copy_stream", None)
    if stream is not None:
        stream.close()


def arrow_type(oid: int, precision: int | None, scale: int | None) -> pa.DataType | None:
    """The Arrow type of a PostgreSQL type (by OID); arrays of a known element type are lists."""
    import pyarrow as pa

    if oid == _NUMERIC:
        # unconstrained numeric has no fixed precision or scale: its exact text
        if precision is None or precision > 76:
            return pa.string()
        return (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale or 0)
    if oid == _NUMERIC_ARRAY:
        return pa.list_(pa.string())
    if not _ARROW_TYPES:
        _ARROW_TYPES.update(_arrow_types())
    return _ARROW_TYPES.get(oid)


_NUMERIC, _NUMERIC_ARRAY = 1700, 1231
_ARROW_TYPES: dict[int, pa.DataType] = {}


def _arrow_types() -> dict[int, pa.DataType]:
    import pyarrow as pa

    by_name = {
        "bool": pa.bool_(),
        "int2": pa.int16(),
        "int4": pa.int32(),
        "int8": pa.int64(),
        "float4": pa.float32(),
        "float8": pa.float64(),
        "text": pa.string(),
        "varchar": pa.string(),
        "bpchar": pa.string(),
        "name": pa.string(),
        "json": pa.string(),
        "jsonb": pa.string(),
        "bytea": pa.binary(),
        "date": pa.date32(),
        "time": pa.time64("us"),
        "timestamp": pa.timestamp("us"),
        # instants; the values a session sees in its own TimeZone are the same instants
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "interval": pa.month_day_nano_interval(),
        "uuid": pa.uuid(),
    }
    types: dict[int, pa.DataType] = {18: pa.string()}  # "char"
    for name, arrow in by_name.items():
        info = psycopg.postgres.types.get(name)
        assert info is not None
        types[info.oid] = arrow
        types[info.array_oid] = pa.list_(arrow)
    return types
