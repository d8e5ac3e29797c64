"""PostgreSQL bulk load: ``COPY ... FROM STDIN (FORMAT csv)``, the CSV written by pyarrow.

Why CSV and not binary COPY: measured side by side on the same server (1M rows of bigint,
bigint, text, numeric, timestamp; ``benchmarks/arrow_load.py``), pyarrow's C++ CSV writer fed to
COPY took 3.5 s, psycopg's binary ``write_row`` 8.7 s (a Python object per value), ADBC's
``adbc_ingest`` 3.6 s. CSV tells NULL (an unquoted empty field) from the empty string (pyarrow
quotes every string). Columns the CSV writer cannot write as PostgreSQL reads them (bytea, arrays)
are turned into PostgreSQL's text forms first.

The COPY runs on the load's pooled connection, in its transaction (with the statement timeout of
``begin_query``): a failure, the deadline or a cancel rolls the whole load back.

Private to :mod:`floe_compute.engines.postgres`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import psycopg

from floe_compute.errors import ConfigError, QueryError

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection

    from floe_compute.context import QueryContext
    from floe_compute.plugin import ComputePlugin

__all__ = ["load_batches", "pg_type"]

CSV_ROWS = 65_536
"""Rows per CSV chunk sent: large enough for pyarrow's writer, small enough to overlap the server."""
_COPY_COLUMN = re.compile(r"column ([^:,]+)")
_COPY_LINE = re.compile(r"line (\d+)")


def pg_type(field: pa.Field) -> str:
    """The PostgreSQL type ``create`` gives an Arrow column (the table in docs/loading.md)."""
    import pyarrow as pa

    t = field.type
    types = pa.types
    if types.is_dictionary(t):
        return pg_type(field.with_type(t.value_type))
    simple = [
        (types.is_boolean, "boolean"),
        (types.is_int8, "smallint"),
        (types.is_int16, "smallint"),
        (types.is_uint8, "smallint"),
        (types.is_int32, "integer"),
        (types.is_uint16, "integer"),
        (types.is_int64, "bigint"),
        (types.is_uint32, "bigint"),
        (types.is_uint64, "numeric(20)"),
        (types.is_float16, "real"),
        (types.is_float32, "real"),
        (types.is_float64, "double precision"),
        (types.is_date, "date"),
        (types.is_time, "time"),
        (lambda x: types.is_string(x) or types.is_large_string(x), "text"),
        (lambda x: types.is_binary(x) or types.is_large_binary(x) or types.is_fixed_size_binary(x), "bytea"),
    ]
    for test, name in simple:
        if test(t):
            return name
    if types.is_decimal(t):
        return f"numeric({t.precision}, {t.scale})"
    if types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp"
    if types.is_list(t) or types.is_large_list(t):
        return pg_type(t.value_field) + "[]"
    raise ConfigError(f"postgresql: column {field.name!r} has Arrow type {t}, which load_arrow cannot map")


def load_batches(
    plugin: ComputePlugin,
    connection: Connection,
    context: QueryContext,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    mode: str,
) -> None:
    """The ``load_batches`` hook: create the table where ``mode`` says, then one COPY."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    columns = ", ".join(quote(n) for n in schema.names)
    converters = [_converter(field) for field in schema]  # unmappable types fail before any DDL
    dbapi = context.dbapi_connection
    with dbapi.cursor() as cursor:
        context.cursor = cursor
        if mode in ("create", "replace"):
            definition = ", ".join(f"{quote(f.name)} {pg_type(f)}" for f in schema)
            if mode == "replace":
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TABLE {table} ({definition})")
        statement = f"COPY {table} ({columns}) FROM STDIN (FORMAT csv, ENCODING 'UTF8')"
        try:
            with cursor.copy(statement) as copy, ThreadPoolExecutor(1, "floe-compute-csv") as writer:
                # the next slice is written as CSV (pyarrow lets go of the GIL) while this one is sent
                pending: Future[memoryview] | None = None
                for batch in batches:
                    for start in range(0, batch.num_rows, CSV_ROWS):
                        ahead = writer.submit(_csv, batch.slice(start, CSV_ROWS), converters)
                        if pending is not None:
                            copy.write(pending.result())
                        pending = ahead
                if pending is not None:
                    copy.write(pending.result())
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            raise _value_error(exc, table, context) from plugin.driver_cause(exc)


def _value_error(exc: psycopg.Error, table: str, context: QueryContext) -> QueryError:
    """The column (and line) a refused value was in, from the server's context; never the value."""
    diag = exc.diag
    where = diag.context or ""
    column = diag.column_name or next(iter(_COPY_COLUMN.findall(where)), None)
    line = next(iter(_COPY_LINE.findall(where)), None)
    what = f"column {column}" if column else "a column"
    row = f" (row {line} of the load)" if line else ""
    reason = f"{type(exc).__name__}, SQLSTATE {diag.sqlstate}"
    return context.error(
        "postgresql",
        f"postgresql: load into {table}: {what}{row} cannot take a value ({reason})",
    )


Converter = Callable[["pa.Array"], "pa.Array"] | None


def _converter(field: pa.Field) -> Converter:
    """How a column is turned into what the CSV writer writes as PostgreSQL reads it."""
    import pyarrow as pa

    t = field.type
    pg_type(field)  # a ConfigError naming the column if it has no PostgreSQL type
    if pa.types.is_dictionary(t):
        inner = _converter(field.with_type(t.value_type))
        return lambda a: _apply(inner, a.cast(t.value_type))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return lambda a: pa.array(
            [None if v is None else "\\x" + v.hex() for v in a.to_pylist()], pa.string()
        )
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return lambda a: pa.array(
            [None if v is None else _array_literal(v) for v in a.to_pylist()], pa.string()
        )
    if pa.types.is_float16(t):
        return lambda a: a.cast(pa.float32())
    return None


def _apply(converter: Converter, array: pa.Array) -> pa.Array:
    return array if converter is None else converter(array)


def _array_literal(values: list[Any]) -> str:
    """PostgreSQL's text form of an array: ``{1,NULL,"a \\"b\\""}``."""
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
        elif isinstance(v, list):
            parts.append(_array_literal(v))
        else:
            text = "\\x" + v.hex() if isinstance(v, bytes) else str(v)
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def _csv(batch: pa.RecordBatch, converters: list[Converter]) -> memoryview:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if any(c is not None for c in converters):
        arrays = [_apply(c, column) for c, column in zip(converters, batch.columns, strict=True)]
        batch = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=False))
    return memoryview(sink.getvalue())
