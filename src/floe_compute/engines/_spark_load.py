"""Spark and Databricks bulk load through the Thrift server: batched multi-row ``INSERT ... VALUES``.

The slow path, and not atomic: the Thrift server has no transactions, so each ``INSERT`` of up to
``ROWS_PER_STATEMENT`` rows is written when it runs. A load that fails or is stopped midway leaves
the statements already run in the table (whole statements: Spark writes each one or none of it).
Every statement runs as the load's own, so the deadline and ``cancel_query()`` cancel the one in
flight, and the core stops the stream before the next one.

The values are SQL literals rendered column by column with pyarrow compute, not bound parameters:
PyHive substitutes parameters into the text on the client anyway (HiveServer2 has none), one
Python call per value: for 50k rows (int, int, text, decimal, timestamp) 0.56 s against 0.08 s
here, and 1.3-1.5x the time of the whole load on a local Thrift server (``benchmarks/spark.py``).
In ``append`` mode each column is first cast to the table's own type on the client, so a value
the table cannot take is a ``QueryError`` naming the column before its statement is sent (Spark's
own cast error quotes the value). Databricks takes the same literals: its connector's native
parameters need DBR 14.1+ (it refuses them for any other server, the HTTP-mode Thrift test server
included), and literals work on every server.

Private to :mod:`floe_compute.engines.spark` and :mod:`floe_compute.engines.databricks`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from floe_compute.errors import ConfigError
from floe_compute.load import run_statement

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection

    from floe_compute.context import QueryContext
    from floe_compute.plugin import ComputePlugin

__all__ = ["ROWS_PER_STATEMENT", "conformed", "load_batches", "spark_type", "table_schema", "values_sql"]

ROWS_PER_STATEMENT = 5_000
"""Rows per ``INSERT``: larger statements cost Spark more to parse than they save in round trips."""


def spark_type(field: pa.Field) -> str:
    """The Spark SQL type ``create`` gives an Arrow column (the table in docs/loading.md)."""
    import pyarrow as pa

    t, types = field.type, pa.types
    if types.is_dictionary(t):
        return spark_type(field.with_type(t.value_type))
    if types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if types.is_timestamp(t):
        return "TIMESTAMP" if t.tz else "TIMESTAMP_NTZ"
    if types.is_list(t) or types.is_large_list(t):
        return f"ARRAY<{spark_type(t.value_field)}>"
    exact = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.uint8(): "SMALLINT",
        pa.int32(): "INT",
        pa.uint16(): "INT",
        pa.int64(): "BIGINT",
        pa.uint32(): "BIGINT",
        pa.uint64(): "DECIMAL(20, 0)",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
        pa.date64(): "DATE",
    }
    if t in exact:
        return exact[t]
    if types.is_string(t) or types.is_large_string(t):
        return "STRING"
    if types.is_binary(t) or types.is_large_binary(t):
        return "BINARY"
    raise ConfigError(f"spark: column {field.name!r} has Arrow type {t}, which load_arrow cannot map")


def _quoted_strings(array: pa.Array, prefix: str = "") -> pa.Array:
    """``prefix'text'`` with Spark's string escapes (backslashes are escapes in its literals)."""
    import pyarrow.compute as pc

    text = pc.replace_substring(array.cast("string"), "\\", "\\\\")
    text = pc.replace_substring(text, "'", "\\'")
    return pc.binary_join_element_wise(prefix + "'", text, "'", "")


def _literals(array: pa.Array) -> pa.Array:
    """The column as SQL literal texts, ``NULL`` for its nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t, types = array.type, pa.types
    if types.is_dictionary(t):
        return _literals(array.dictionary_decode())
    if types.is_string(t) or types.is_large_string(t):
        text = _quoted_strings(array)
    elif types.is_integer(t):
        text = array.cast("string")
    elif types.is_floating(t):
        text = pc.binary_join_element_wise(array.cast("string"), "D", "")
        for value, spelled in (("nanD", "NaN"), ("infD", "Infinity"), ("-infD", "-Infinity")):
            text = pc.if_else(pc.equal(text, value), f"CAST('{spelled}' AS DOUBLE)", text)
    elif types.is_decimal(t):
        text = pc.binary_join_element_wise(array.cast("string"), "BD", "")
    elif types.is_boolean(t):
        text = pc.if_else(array, "TRUE", "FALSE")
    elif types.is_date(t):
        text = _quoted_strings(array.cast(pa.date32()), "DATE")
    elif types.is_timestamp(t):
        wall = array.cast(pa.timestamp("us"), safe=False)  # the UTC instant, or the wall time
        text = _quoted_strings(wall, "TIMESTAMP" if t.tz else "TIMESTAMP_NTZ")
        if t.tz:
            text = pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, -1), "Z'", "")
    elif types.is_binary(t) or types.is_large_binary(t):
        text = pa.array([None if v is None else f"X'{v.hex()}'" for v in array.to_pylist()], pa.string())
    elif types.is_list(t) or types.is_large_list(t):
        text = _array_literals(array)
    else:
        raise ConfigError(f"spark: load_arrow cannot write Arrow type {t}")
    return pc.fill_null(text, "NULL")


def _array_literals(array: pa.Array) -> pa.Array:
    import pyarrow as pa

    items = _literals(array.flatten()).to_pylist()
    offsets = array.offsets.to_pylist()
    first = offsets[0]  # a slice's offsets start where it does in its parent
    element = spark_type(pa.field("item", array.type.value_type))
    valid = array.is_valid().to_pylist()
    texts = [
        f"CAST(array({', '.join(items[a - first : b - first])}) AS ARRAY<{element}>)" if ok else None
        for ok, (a, b) in zip(valid, itertools.pairwise(offsets), strict=True)
    ]
    return pa.array(texts, pa.string())


def values_sql(batch: pa.RecordBatch) -> str:
    """``(v, v), (v, v)``: the batch's rows as a ``VALUES`` list of literals."""
    import pyarrow.compute as pc

    columns = [_literals(column) for column in batch.columns]
    rows = pc.binary_join_element_wise(*columns, ", ") if len(columns) > 1 else columns[0]
    return "(" + "), (".join(rows.to_pylist()) + ")"


def load_batches(
    plugin: ComputePlugin,
    connection: Connection,
    context: QueryContext,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    mode: str,
) -> None:
    """The ``load_batches`` hook: create the table where ``mode`` says, then one ``INSERT`` per
    ``ROWS_PER_STATEMENT`` rows."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    if mode in ("create", "replace"):
        if mode == "replace":
            run_statement(connection, context, f"DROP TABLE IF EXISTS {table}").close()
        definition = ", ".join(f"{quote(f.name)} {spark_type(f)}" for f in schema)
        run_statement(connection, context, f"CREATE TABLE {table} ({definition})").close()
        target = None
    else:
        target = table_schema(plugin, connection, context, table)
    head = f"INSERT INTO {table} ({', '.join(quote(n) for n in schema.names)}) VALUES "
    for batch in batches:
        if target is not None:
            batch = conformed(batch, target, table, context, plugin.name)
        for start in range(0, batch.num_rows, ROWS_PER_STATEMENT):
            rows = values_sql(batch.slice(start, ROWS_PER_STATEMENT))
            run_statement(connection, context, head + rows).close()


def table_schema(
    plugin: ComputePlugin, connection: Connection, context: QueryContext, table: str
) -> pa.Schema | None:
    """The table's columns as Arrow types, as the engine reports an empty result of it."""
    result = run_statement(connection, context, f"SELECT * FROM {table} WHERE 1 = 0")
    try:
        reader = plugin.arrow_reader(result.cursor, 1)
        return None if reader is None else reader.schema
    finally:
        result.close()


_CHECKED = ("is_integer", "is_floating", "is_decimal", "is_boolean", "is_date")
"""Target types a column is cast to on the client (others, Spark converts as it stores them)."""


def conformed(
    batch: pa.RecordBatch, target: pa.Schema, table: str, context: QueryContext, engine: str
) -> Any:
    """The batch with each column cast to its table column's type where that is checked here."""
    import pyarrow as pa

    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        index = target.get_field_index(field.name)
        kind = target.field(index).type if index >= 0 else None
        if kind is not None and kind != field.type and any(getattr(pa.types, t)(kind) for t in _CHECKED):
            try:
                column = column.cast(kind)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise context.error(
                    engine,
                    f"{engine}: load into {table}: column {field.name} cannot take a value "
                    f"of its data ({field.type} to the table's {kind}: {type(exc).__name__})",
                ) from None
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
