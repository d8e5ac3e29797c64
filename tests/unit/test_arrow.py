"""Arrow batches built from rows (the generic builder), and DuckDB staying on its native reader."""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pytest

from floe_compute import QueryError, create_plugin
from floe_compute.arrow import ArrowConversionError, RowBatchBuilder
from floe_compute.engines.duckdb import DuckDBComputePlugin


def test_declared_types_hold_for_a_first_batch_of_nulls() -> None:
    builder = RowBatchBuilder(["id", "name"], [pa.int64(), pa.string()])
    assert builder.schema == pa.schema([("id", pa.int64()), ("name", pa.string())])
    first = builder.build([(None, None), (None, None)])
    second = builder.build([(1, "a"), (None, "b")])
    assert first.schema == second.schema == builder.schema
    assert second.column(0).to_pylist() == [1, None]


def test_undescribed_columns_are_typed_by_the_first_batch_and_all_null_is_string() -> None:
    builder = RowBatchBuilder(["n", "empty"], [None, None])
    schema = builder.infer([(1, None), (2, None)])
    assert schema.types == [pa.int64(), pa.string()]
    batch = builder.build([(3, "later text")])
    assert batch.column(1).to_pylist() == ["later text"]


def test_objects_in_a_text_column_become_their_text() -> None:
    builder = RowBatchBuilder(["doc", "id"], [pa.string(), pa.uuid()])
    value = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    batch = builder.build([({"a": [1, "é"]}, value), (None, None)])
    assert batch.column(0).to_pylist() == ['{"a": [1, "é"]}', None]
    assert batch.column(1).to_pylist() == [value, None]


def test_a_value_that_does_not_fit_names_its_column_not_the_value() -> None:
    builder = RowBatchBuilder(["ok", "amount"], [pa.int32(), pa.int8()])
    with pytest.raises(ArrowConversionError, match=r"column 'amount'.*int8") as caught:
        builder.build([(1, 1), (2, 1000)])
    assert "1000" not in str(caught.value)
    assert isinstance(caught.value.__cause__, pa.ArrowException)


class RowsOnlyDuckDB(DuckDBComputePlugin):
    """DuckDB without its native Arrow reader: batches built from rows (a real DuckDB underneath)."""

    name = "duckdb-rows-only"

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        return None

    def arrow_type(self, column: Any, dbapi_cursor: Any) -> pa.DataType | None:
        return {"BIGINT": pa.int64(), "VARCHAR": pa.string()}.get(str(column[1]))


def test_built_batches_keep_the_engines_types_across_batches() -> None:
    plugin = RowsOnlyDuckDB(create_plugin().config)
    sql = "SELECT CASE WHEN i >= 150 THEN i END AS v, 'r' || i AS label FROM range(200) t(i) ORDER BY i"
    with plugin, plugin.execute(sql) as result:
        reader = result.arrow_batches(100)
        batches = list(reader)
    assert reader.schema.field("v").type == pa.int64()
    assert [b.num_rows for b in batches] == [100, 100]
    assert batches[0].column(0).null_count == 100
    assert batches[1].column(0).to_pylist()[-1] == 199


def test_built_batches_raise_query_error_naming_the_column() -> None:
    class Narrow(RowsOnlyDuckDB):
        def arrow_type(self, column: Any, dbapi_cursor: Any) -> pa.DataType | None:
            return pa.int8()

    plugin = Narrow(create_plugin().config)
    with plugin:
        with plugin.execute("SELECT i AS small FROM range(300) t(i)") as result:
            with pytest.raises(QueryError, match=r"column 'small'") as caught:
                result.to_arrow()
            assert caught.value.query_id == result.query_id
        assert plugin.pool_stats().in_use == 0


def test_duckdb_stays_on_its_native_reader() -> None:
    # types only DuckDB's own Arrow reader produces: an ENUM is a dictionary, a STRUCT a struct
    sql = (
        "SELECT CASE WHEN i >= 5 THEN 'b' END::ENUM('a', 'b') AS e, "
        "{'x': i, 'y': 'v'} AS s, i::HUGEINT AS h FROM range(10) t(i)"
    )
    with create_plugin() as plugin, plugin.execute(sql) as result:
        table = result.arrow_batches(4).read_all()
    assert pa.types.is_dictionary(table.schema.field("e").type)
    assert pa.types.is_struct(table.schema.field("s").type)
    assert table.column("e").null_count == 5
    assert table.num_rows == 10
