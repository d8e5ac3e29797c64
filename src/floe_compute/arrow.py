"""Arrow record batches built from rows, for engines whose driver only gives rows.

The schema comes from the engine's description of the result (``ComputePlugin.arrow_type`` maps
each column of ``cursor.description``), never from the values of a first batch: a column that is
NULL in the first rows keeps its type, and every batch has the same schema. Only a column the
engine cannot type is inferred from the first batch's values (all NULL there: ``string``).

A value that cannot take its column's type raises :class:`ArrowConversionError` naming the column,
which the caller sees as a :class:`~floe_compute.errors.QueryError` (its message, the query's id).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ArrowConversionError", "RowBatchBuilder"]

Row = Sequence[Any]
ArrowTypeOf = Callable[[Any, Any], "pa.DataType | None"]
"""The engine's Arrow type of a column: ``(description entry, DBAPI cursor) -> type or None``."""


class ArrowConversionError(Exception):
    """A value of ``column`` could not take the Arrow type ``arrow_type``."""

    def __init__(self, column: str, arrow_type: object, hint: str = "") -> None:
        # the value itself stays out of the message (it may be a bound parameter); the cause has it
        message = f"column {column!r}: a value cannot be converted to Arrow {arrow_type}"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.column = column


class RowBatchBuilder:
    """Turns lists of row tuples into record batches of one fixed schema.

    A batch of rows becomes one struct array in a single call into Arrow's C++ converter, whose
    children are the columns: nothing runs in Python per value. Only types Arrow cannot take as
    the driver gives them (UUIDs, JSON documents as objects) go column by column, with a Python
    step per value for those columns.
    """

    def __init__(self, names: Sequence[str], types: Sequence[pa.DataType | None]) -> None:
        self.names = list(names)
        self._types = list(types)
        self._schema: pa.Schema | None = None
        self._struct: pa.StructType | None = None
        self._struct_ok = True
        if all(t is not None for t in self._types):
            self._schema = self._make_schema(self._types)

    @classmethod
    def for_cursor(cls, arrow_type: ArrowTypeOf, dbapi_cursor: Any, names: Sequence[str]) -> RowBatchBuilder:
        """A builder typed by the engine's description of the cursor's columns."""
        description = getattr(dbapi_cursor, "description", None) or ()
        types = [arrow_type(column, dbapi_cursor) for column in description]
        if len(types) != len(names):
            types = [None] * len(names)
        return cls(names, types)

    @property
    def schema(self) -> pa.Schema | None:
        """The schema, or None until a first batch has typed the columns the engine could not."""
        return self._schema

    def infer(self, rows: Sequence[Row]) -> pa.Schema:
        """Fix the schema, typing undescribed columns from these rows (all NULL: ``string``)."""
        import pyarrow as pa

        if self._schema is None:
            columns = self._transpose(rows)
            types: list[pa.DataType] = []
            for declared, values in zip(self._types, columns, strict=True):
                if declared is None:
                    try:
                        declared = pa.array(values).type
                    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                        declared = pa.string()  # mixed values: their text form
                    if pa.types.is_null(declared):
                        declared = pa.string()
                types.append(declared)
            self._types = list(types)
            self._schema = self._make_schema(types)
        return self._schema

    def build(self, rows: Sequence[Row]) -> pa.RecordBatch:
        import pyarrow as pa

        schema = self._schema if self._schema is not None else self.infer(rows)
        if self._struct is None and self._struct_ok:
            plain = not any(isinstance(field.type, pa.ExtensionType) for field in schema)
            self._struct = pa.struct(list(schema)) if plain else None
            self._struct_ok = plain
        if self._struct is not None:
            # the rows as they are, as one struct array: a single pass in C++, no transposing
            try:
                return pa.RecordBatch.from_struct_array(pa.array(rows, type=self._struct))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
                # values Arrow does not take as they are (JSON documents for a text column), or a
                # bad value: column by column, which converts the former and names the latter
                self._struct, self._struct_ok = None, False
        columns = self._transpose(rows)
        arrays = [
            _convert(values, field.type, field.name) for values, field in zip(columns, schema, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _transpose(self, rows: Sequence[Row]) -> list[Sequence[Any]]:
        if not rows:
            return [() for _ in self.names]
        return [list(map(operator.itemgetter(i), rows)) for i in range(len(self.names))]

    def _make_schema(self, types: Sequence[pa.DataType | None]) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(name, t) for name, t in zip(self.names, types, strict=True)])


def _convert(values: Sequence[Any], arrow_type: pa.DataType, column: str) -> pa.Array:
    import pyarrow as pa

    try:
        special = _special(arrow_type)
        if special is not None:
            return special(values, arrow_type)
        try:
            return pa.array(values, type=arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if not (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)):
                raise
            # the driver gave objects (JSON documents, enums, ...) for a text column
            return pa.array([_text(v) for v in values], type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError) as exc:
        raise ArrowConversionError(column, arrow_type) from exc


def _special(arrow_type: pa.DataType) -> Callable[[Sequence[Any], pa.DataType], pa.Array] | None:
    import pyarrow as pa

    if isinstance(arrow_type, pa.ExtensionType) and arrow_type.extension_name == "arrow.uuid":
        return _uuids
    return None


def _uuids(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    import pyarrow as pa

    storage = pa.array([None if v is None else v.bytes for v in values], type=arrow_type.storage_type)
    return pa.ExtensionArray.from_storage(arrow_type, storage)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list, bool, int, float)):
        # the form PostgreSQL prints jsonb in
        return json.dumps(value, ensure_ascii=False)
    return str(value)
