"""PostgreSQL results as Arrow on a real server: exact types from the description, the COPY path and
the rows path giving the same batches as the rows themselves, and the core's promises on the COPY."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from floe_compute import (
    ComputePlugin,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
    create_plugin,
)

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres

# (PostgreSQL type, a SQL expression of it for row number g, the Arrow type expected)
TYPES: list[tuple[str, str, pa.DataType]] = [
    ("int2", "g::int2", pa.int16()),
    ("int4", "g::int4", pa.int32()),
    ("int8", "g::int8 * 10000000000", pa.int64()),
    ("float4", "(g::float4 / 4)::float4", pa.float32()),
    ("float8", "g::float8 / 3", pa.float64()),
    ("numeric(12,3)", "(g::numeric / 7)::numeric(12,3)", pa.decimal128(12, 3)),
    ("numeric", "g::numeric / 7", pa.string()),
    ("text", "'t' || g || CASE WHEN g % 3 = 0 THEN ', \"q\"' || chr(10) || 'x' ELSE '' END", pa.string()),
    ("varchar(5)", "left('v' || g, 5)::varchar(5)", pa.string()),
    ("bytea", "decode(lpad(to_hex(g), 8, '0'), 'hex')", pa.binary()),
    ("bool", "g % 2 = 0", pa.bool_()),
    ("date", "date '2024-02-28' + g", pa.date32()),
    ("time", "time '00:00:01.5' + g * interval '1 minute'", pa.time64("us")),
    ("timestamp", "timestamp '2024-02-28 12:00:00.123456' + g * interval '1 hour'", pa.timestamp("us")),
    (
        "timestamptz",
        "timestamptz '2024-03-31 00:30:00+00' + g * interval '1 hour'",
        pa.timestamp("us", tz="UTC"),
    ),
    ("interval", "g * interval '1 day 2 hours 3.5 seconds'", pa.month_day_nano_interval()),
    ("uuid", "md5(g::text)::uuid", pa.uuid()),
    ("json", "json_build_object('g', g, 'name', 'n' || g)", pa.string()),
    ("jsonb", "jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g))", pa.string()),
    ("int4[]", "ARRAY[g, NULL, g + 1]", pa.list_(pa.int32())),
    ("text[]", "ARRAY['a' || g, 'b,\"c\"']", pa.list_(pa.string())),
]
ROWS = 30
BATCH = 10  # the NULLs-first column is NULL in the whole first batch


@pytest.fixture
def plugin(pg_url: str) -> Iterator[ComputePlugin]:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as compute:
        yield compute


@pytest.fixture(params=["copy", "rows"])
def arrow(request: pytest.FixtureRequest) -> bool:
    """``execute(..., arrow=True)`` runs the query as a COPY; without it batches come from rows."""
    return bool(request.param == "copy")


def _select(pg_type: str, expression: str) -> str:
    """Three columns of one type: NULL in the first batch then values, only NULL, only values."""
    return (
        f"SELECT (CASE WHEN g > {BATCH} THEN {expression} END)::{pg_type} AS nulls_first, "
        f"(CASE WHEN false THEN {expression} END)::{pg_type} AS nulls_only, "
        f"({expression})::{pg_type} AS vals "
        f"FROM generate_series(1, {ROWS}) AS g ORDER BY g"
    )


def _comparable(value: Any, arrow_type: pa.DataType) -> Any:
    """A row value (psycopg's) and an Arrow value (``as_py``) in one comparable form."""
    if value is None:
        return None
    if isinstance(value, (dict, list)) and not pa.types.is_list(arrow_type):
        return value  # json from the rows
    if pa.types.is_string(arrow_type) and isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)  # json from Arrow
    if isinstance(value, decimal.Decimal) and pa.types.is_string(arrow_type):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value
    if type(value).__name__ == "MonthDayNano":
        # psycopg counts a month as 30 days in its timedelta
        return dt.timedelta(days=value.months * 30 + value.days, microseconds=value.nanoseconds // 1000)
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, float) and arrow_type == pa.float32():
        return round(value, 3)
    return value


@pytest.mark.parametrize(("pg_type", "expression", "arrow_type"), TYPES, ids=[t[0] for t in TYPES])
def test_each_type_matches_the_rows(
    plugin: ComputePlugin, arrow: bool, pg_type: str, expression: str, arrow_type: pa.DataType
) -> None:
    sql = _select(pg_type, expression)
    with plugin.execute(sql) as result:
        rows = result.fetchall()
    with plugin.execute(sql, arrow=arrow) as result:
        reader = result.arrow_batches(BATCH)
        assert [field.type for field in reader.schema] == [arrow_type] * 3, pg_type
        batches = list(reader)
    assert [b.num_rows for b in batches] == [BATCH] * (ROWS // BATCH)
    assert all(b.schema == reader.schema for b in batches)
    table = pa.Table.from_batches(batches, schema=reader.schema)
    assert table.column("nulls_first").null_count == BATCH
    assert table.column("nulls_only").null_count == ROWS
    assert table.column("vals").null_count == 0
    for name_index, name in enumerate(table.column_names):
        from_arrow = [_comparable(v, arrow_type) for v in table.column(name).to_pylist()]
        from_rows = [_comparable(row[name_index], arrow_type) for row in rows]
        assert from_arrow == from_rows, f"{pg_type} {name}"
    assert plugin.pool_stats().in_use == 0


def test_null_first_batch_keeps_the_type(plugin: ComputePlugin, arrow: bool) -> None:
    # the report's case: all NULL in the first batch of 100000, values after
    sql = "SELECT CASE WHEN g > 150000 THEN g END AS v FROM generate_series(1, 200000) g"
    with plugin.execute(sql, arrow=arrow) as result:
        table = result.arrow_batches(100_000).read_all()
    assert table.schema.field("v").type == pa.int32()
    assert table.num_rows == 200_000
    assert table.column("v").null_count == 150_000
    assert table.column("v").to_pylist()[-1] == 200_000


def test_empty_string_and_null_stay_apart(plugin: ComputePlugin, arrow: bool) -> None:
    sql = "SELECT * FROM (VALUES (''), (NULL), ('NULL'), ('\"'), ('a,b'), ('NaN')) AS t(s)"
    with plugin.execute(sql, arrow=arrow) as result:
        assert result.to_arrow().column("s").to_pylist() == ["", None, "NULL", '"', "a,b", "NaN"]


def test_value_that_does_not_convert_names_the_column(plugin: ComputePlugin, arrow: bool) -> None:
    sql = (
        "SELECT g AS ok, CASE WHEN g = 3 THEN 'NaN'::numeric ELSE g END::numeric(10, 2) AS amount "
        "FROM generate_series(1, 5) g"
    )
    with (
        plugin.execute(sql, arrow=arrow) as result,
        pytest.raises(QueryError, match=r"column 'amount'.*decimal128\(10, 2\)") as caught,
    ):
        result.to_arrow()
    error = caught.value
    assert error.query_id == result.query_id
    assert not isinstance(error, pa.ArrowException)
    assert plugin.pool_stats().in_use == 0
    with plugin.execute("SELECT 1") as again:
        assert again.fetchall() == [(1,)]


def test_parameters_reach_the_query(plugin: ComputePlugin, arrow: bool) -> None:
    sql = "SELECT g + :offset AS n, :name || '%' AS label FROM generate_series(1, 3) g WHERE :name LIKE 'O%'"
    with plugin.execute(sql, {"offset": 10, "name": "O'Brien"}, arrow=arrow) as result:
        table = result.to_arrow()
    assert table.column("n").to_pylist() == [11, 12, 13]
    assert table.column("label").to_pylist() == ["O'Brien%"] * 3


def test_duplicate_and_unnamed_columns(plugin: ComputePlugin, arrow: bool) -> None:
    with plugin.execute("SELECT 1 AS a, 'x' AS a, 2", arrow=arrow) as result:
        table = result.to_arrow()
    assert table.column_names == ["a", "a", "?column?"]
    assert table.to_pylist() == [{"a": "x", "?column?": 2}]  # to_pylist keeps the last "a"
    assert table.column(0).to_pylist() == [1]


def test_statements_that_are_not_queries_fall_back_to_rows(plugin: ComputePlugin, arrow: bool) -> None:
    with plugin.execute("CREATE TABLE t (id int, name text)", arrow=arrow) as result:
        assert result.to_arrow().num_rows == 0
    sql = "INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 3) g RETURNING id, name"
    with plugin.execute(sql, arrow=arrow) as result:
        table = result.to_arrow()
    assert table.schema.field("id").type == pa.int32()
    assert table.column("name").to_pylist() == ["n1", "n2", "n3"]
    with plugin.execute("SELECT count(*) FROM t", arrow=arrow) as result:
        assert result.fetchall() == [(3,)]  # the insert was committed once


# -- the COPY path keeps the core's promises ------------------------------------------------------


@pytest.fixture
def copy_plugin(plugin: ComputePlugin) -> ComputePlugin:
    return plugin


@pytest.fixture(params=[True, False], ids=["hinted", "plain"])
def hint(request: pytest.FixtureRequest) -> bool:
    """``execute(sql, arrow=True)`` or a plain ``execute(sql)``: an Arrow read takes the COPY either way."""
    return bool(request.param)


def _server_queries(pg_url: str, state: str = "active") -> list[str]:
    """The statements of the other sessions of this test's application in ``state`` now."""
    sql = (
        "SELECT query FROM pg_stat_activity WHERE application_name = current_setting('application_name') "
        "AND pid <> pg_backend_pid() AND state LIKE :state"
    )
    other = create_plugin(pg_url, pool={"size": 1, "max_overflow": 0})
    with other, other.execute(sql, {"state": state}) as result:
        return [row[0] for row in result.fetchall()]


def test_copy_runs_on_the_pooled_connection(hint: bool, copy_plugin: ComputePlugin, pg_url: str) -> None:
    before = copy_plugin.pool_stats()
    sql = "SELECT g FROM generate_series(1, 50000) g"
    with copy_plugin.execute(sql, tags={"job": "nightly"}, arrow=hint) as result:
        reader = result.arrow_batches(10_000)
        next(iter(reader))
        assert copy_plugin.pool_stats().in_use == 1
        # the tags' sqlcommenter comment goes with the statement into the COPY
        assert any("COPY (" in q and "job='nightly'" in q for q in _server_queries(pg_url, "%"))
        assert sum(b.num_rows for b in reader) == 40_000
    after = copy_plugin.pool_stats()
    assert after.in_use == 0
    assert after.checkouts == before.checkouts + 1
    assert after.connects == before.connects  # no connection of its own


def test_deadline_stops_the_copy_on_the_server(hint: bool, copy_plugin: ComputePlugin, pg_url: str) -> None:
    endless = "SELECT generate_series(1, 10000000000) AS i"
    seen = 0
    with pytest.raises(QueryTimeoutError), copy_plugin.execute(endless, timeout=1, arrow=hint) as result:
        for batch in result.arrow_batches(10_000):
            seen += batch.num_rows
    assert seen > 0
    assert copy_plugin.pool_stats().in_use == 0
    assert copy_plugin.pool_stats().invalidations == 0
    assert _server_queries(pg_url) == []
    with copy_plugin.execute("SELECT 1") as again:
        assert again.fetchall() == [(1,)]


def test_cancel_stops_the_copy(hint: bool, copy_plugin: ComputePlugin, pg_url: str) -> None:
    result = copy_plugin.execute("SELECT generate_series(1, 10000000000) AS i", arrow=hint)
    started = threading.Event()
    seen = 0
    with pytest.raises(QueryCancelledError):
        for batch in result.arrow_batches(10_000):
            seen += batch.num_rows
            if not started.is_set():
                started.set()
                threading.Thread(target=result.cancel).start()
    assert seen > 0
    assert copy_plugin.pool_stats().invalidations == 0
    assert _server_queries(pg_url) == []


def test_max_result_rows_holds(hint: bool, pg_url: str) -> None:
    with create_plugin(
        pg_url, pool={"size": 1, "max_overflow": 0}, limits={"max_result_rows": 25_000}
    ) as compute:
        sql = "SELECT g FROM generate_series(1, 1000000) g"
        with (
            pytest.raises(ResourceLimitError, match="max_result_rows=25000"),
            compute.execute(sql, arrow=hint) as result,
        ):
            for _ in result.arrow_batches(10_000):
                pass
        assert compute.pool_stats().invalidations == 0
        with compute.execute("SELECT g FROM generate_series(1, 20000) g", arrow=hint) as result:
            assert result.to_arrow().num_rows == 20_000


def test_closing_in_the_middle_leaves_the_connection_clean(
    hint: bool, copy_plugin: ComputePlugin, pg_url: str
) -> None:
    for _ in range(3):
        sql = "SELECT g, repeat('x', 100) FROM generate_series(1, 2000000) g"
        with copy_plugin.execute(sql, arrow=hint) as result:
            batches = iter(result.arrow_batches(1000))
            assert next(batches).num_rows == 1000
    stats = copy_plugin.pool_stats()
    assert stats.in_use == 0
    assert stats.invalidations == 0
    assert stats.connects == 1
    assert _server_queries(pg_url) == []
    with copy_plugin.execute("SELECT current_setting('DateStyle')") as again:
        assert again.fetchall() == [("ISO, MDY",)]


def test_session_date_style_does_not_change_the_values(hint: bool, pg_url: str) -> None:
    with create_plugin(pg_url, settings={"DateStyle": "SQL, DMY", "extra_float_digits": 0}) as compute:
        sql = "SELECT date '2024-01-02' AS d, timestamp '2024-01-02 03:04:05' AS ts, 0.1::float8 AS f"
        with compute.execute(sql, arrow=hint) as result:
            row = result.to_arrow().to_pylist()[0]
    assert row == {"d": dt.date(2024, 1, 2), "ts": dt.datetime(2024, 1, 2, 3, 4, 5), "f": 0.1}


def test_uuid_values_are_uuids(hint: bool, copy_plugin: ComputePlugin) -> None:
    with copy_plugin.execute(
        "SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u", arrow=hint
    ) as result:
        value = result.to_arrow().column("u").to_pylist()[0]
    assert value == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")


def test_rows_of_an_arrow_execute_come_from_the_copy(hint: bool, copy_plugin: ComputePlugin) -> None:
    sql = "SELECT g, 'n' || g AS name, (g::numeric / 2)::numeric(6, 1) AS half FROM generate_series(1, 25) g"
    with copy_plugin.execute(sql) as result:
        expected = result.fetchall()
    with copy_plugin.execute(sql, arrow=hint) as result:
        assert result.fetchone() == expected[0]
        assert result.fetchmany(4) == expected[1:5]
        assert list(result) == expected[5:]
    assert copy_plugin.pool_stats().in_use == 0


def test_cancel_query_stops_the_copy_on_the_server(
    hint: bool, copy_plugin: ComputePlugin, pg_url: str
) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            copy_plugin.execute(
                "SELECT 1 AS one FROM pg_sleep(30)", arrow=hint, query_id="copying"
            ).to_arrow()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not any("COPY (" in q for q in _server_queries(pg_url)):
        assert time.monotonic() < deadline, "the COPY never ran"
        time.sleep(0.02)
    assert copy_plugin.cancel_query("copying") is True
    thread.join(10)
    assert [type(e) for e in errors] == [QueryCancelledError]
    assert _server_queries(pg_url) == []
    assert copy_plugin.pool_stats().in_use == 0


def test_asyncio_arrow_execute_reads_the_copy(hint: bool, copy_plugin: ComputePlugin) -> None:
    async def main() -> pa.Table:
        sql = "SELECT g, 'n' || g AS name FROM generate_series(1, 30000) g"
        async with copy_plugin.aexecute(sql, arrow=hint) as result:
            batches = [batch async for batch in result.arrow_batches(10_000)]
        return pa.Table.from_batches(batches)

    table = asyncio.run(main())
    assert table.num_rows == 30_000
    assert table.schema.types == [pa.int32(), pa.string()]
    assert copy_plugin.pool_stats().in_use == 0
