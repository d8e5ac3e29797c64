"""The first read of a PostgreSQL result picks its path (rows from the cursor, or Arrow through a
COPY), with or without ``execute(..., arrow=True)``, and the query runs exactly once either way."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from floe_compute import ComputePlugin, QueryError, create_plugin

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


@pytest.fixture
def copy_plugin(pg_url: str) -> Iterator[ComputePlugin]:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as compute:
        yield compute


@pytest.fixture(params=[True, False], ids=["hinted", "plain"])
def hint(request: pytest.FixtureRequest) -> bool:
    """``execute(sql, arrow=True)`` or a plain ``execute(sql)``."""
    return bool(request.param)


@pytest.mark.parametrize("read", ["arrow", "rows", "rows_then_arrow"])
def test_the_query_runs_exactly_once(hint: bool, copy_plugin: ComputePlugin, read: str) -> None:
    # a volatile function: whichever path the first read takes, each row's nextval() runs once
    with copy_plugin.execute("CREATE SEQUENCE IF NOT EXISTS once_seq") as created:
        created.fetchall()
    sql = "SELECT nextval('once_seq') AS n FROM generate_series(1, 2500) g"
    with copy_plugin.execute("SELECT nextval('once_seq')") as result:
        (start,) = result.fetchall()[0]
    with copy_plugin.execute(sql, arrow=hint) as result:
        if read == "arrow":
            values = result.to_arrow().column("n").to_pylist()
        elif read == "rows":
            values = [row[0] for row in result]
        else:
            values = [row[0] for row in result.fetchmany(1000)]
            values += result.to_arrow().column("n").to_pylist()
    assert values == list(range(start + 1, start + 2501))
    with copy_plugin.execute("SELECT last_value FROM once_seq") as result:
        assert result.fetchall() == [(start + 2500,)]


def test_rows_then_arrow_on_one_result(hint: bool, copy_plugin: ComputePlugin) -> None:
    sql = "SELECT g, 'n' || g AS name FROM generate_series(1, 25000) g"
    with copy_plugin.execute(sql, arrow=hint) as result:
        head = result.fetchmany(7)
        table = result.to_arrow()
    assert head == [(g, f"n{g}") for g in range(1, 8)]
    assert table.column("g").to_pylist() == list(range(8, 25001))
    assert table.schema.types == [pa.int32(), pa.string()]
    assert copy_plugin.pool_stats().in_use == 0


def test_batches_larger_than_one_fetch_come_whole_and_in_order(copy_plugin: ComputePlugin) -> None:
    # a batch of more rows than one FETCH asks for is read in several, and handed out as one
    sql = "SELECT g FROM generate_series(1, 60001) g"
    with copy_plugin.execute(sql) as result:
        assert result.fetchmany(1) == [(1,)]  # then Arrow is built from rows
        batches = list(result.arrow_batches(25_000))
    assert [batch.num_rows for batch in batches] == [25_000, 25_000, 10_000]
    assert pa.Table.from_batches(batches).column("g").to_pylist() == list(range(2, 60002))
    with copy_plugin.execute(sql) as result:
        assert [len(result.fetchmany(35_000)) for _ in range(3)] == [35_000, 25_001, 0]
    assert copy_plugin.pool_stats().in_use == 0


def test_errors_still_surface_at_execute(hint: bool, copy_plugin: ComputePlugin) -> None:
    with pytest.raises(QueryError, match="no_such_table"):
        copy_plugin.execute("SELECT * FROM no_such_table", arrow=hint)
    assert copy_plugin.pool_stats().in_use == 0


def test_a_result_closed_unread_still_ran_its_statement(hint: bool, copy_plugin: ComputePlugin) -> None:
    # nothing is fetched at execute(): closing the result without reading it still runs the
    # statement (to its first row, as a read of one row would), so a SELECT called for its effect works
    with copy_plugin.execute("CREATE SEQUENCE IF NOT EXISTS unread_seq") as created:
        created.fetchall()
    with copy_plugin.execute("SELECT setval('unread_seq', 42)", arrow=hint):
        pass
    with copy_plugin.execute("SELECT last_value FROM unread_seq") as result:
        assert result.fetchall() == [(42,)]
