"""Snowflake results as Arrow: the column types from the result's description.

The connector's Arrow batches take their types from each chunk's data (an integer column comes
as int8 in one chunk and int64 in the next), and a result without rows has no batch at all. Typing
the columns from ``cursor.description`` gives every batch, and an empty result, one schema. Columns
whose Arrow type depends on the data or the session (timestamps, times) keep the first batch's type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from floe_compute.arrow import ArrowConversionError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["arrow_type", "reader"]

# the connector's type codes (snowflake.connector.constants.FIELD_TYPES)
_FIXED, _REAL, _TEXT, _DATE, _VARIANT, _OBJECT, _ARRAY, _BINARY, _BOOLEAN = 0, 1, 2, 3, 5, 9, 10, 11, 13


def arrow_type(column: Any) -> pa.DataType | None:
    """The Arrow type of one column of ``cursor.description``, or None when the data decides."""
    import pyarrow as pa

    code = column.type_code
    if code == _FIXED:
        scale = column.scale or 0
        if scale == 0:
            return pa.int64()
        # the connector makes them decimals (arrow_number_to_decimal), not floats
        return pa.decimal128(column.precision or 38, scale)
    simple = {
        _REAL: pa.float64(),
        _TEXT: pa.string(),
        _DATE: pa.date32(),
        _VARIANT: pa.string(),
        _OBJECT: pa.string(),
        _ARRAY: pa.string(),
        _BINARY: pa.binary(),
        _BOOLEAN: pa.bool_(),
    }
    return simple.get(code)


def reader(
    dbapi_cursor: Any, batch_size: int, normalize: Callable[[str], str]
) -> pa.RecordBatchReader | None:
    """The connector's Arrow batches in the description's types; None for a result without rows
    (the core builds its empty batch from the same types) or one that is not Arrow (DML counts)."""
    import pyarrow as pa
    from snowflake.connector import errors as sf_errors

    try:
        tables = iter(dbapi_cursor.fetch_arrow_batches())
    except sf_errors.NotSupportedError:
        return None  # a JSON result (DML row counts): the core builds batches from rows
    if (first := next(tables, None)) is None:
        return None
    names = [normalize(n) for n in first.schema.names]  # as result.columns
    described = [arrow_type(c) for c in dbapi_cursor.description or ()]
    if len(described) != len(names):
        described = [None] * len(names)
    # Snowflake's field metadata (logicalType, precision, scale) kept
    fields = [f.with_name(n) for n, f in zip(names, first.schema, strict=True)]
    schema = pa.schema([f if t is None else f.with_type(t) for f, t in zip(fields, described, strict=True)])

    def batches() -> Iterator[pa.RecordBatch]:
        table: pa.Table | None = first
        while table is not None:
            for batch in table.rename_columns(names).to_batches(max_chunksize=batch_size):
                yield batch if batch.schema == schema else _cast(batch, schema)
            table = next(tables, None)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        try:
            columns.append(column if column.type == field.type else column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ArrowConversionError(field.name, field.type) from exc
    return pa.RecordBatch.from_arrays(columns, schema=schema)
