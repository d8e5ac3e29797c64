"""PostgreSQL values Python cannot hold (``infinity``, ``-infinity`` dates and timestamps): a clear
QueryError naming the column by default, on the rows and the COPY path, with the connection kept;
``infinity="clamp"`` reads them as the types' largest and smallest values, the same on both paths."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from floe_compute import ComputePlugin, ConfigError, QueryError, create_plugin

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres

UTC = dt.timezone.utc
OPEN_ENDED = (
    "SELECT 1 AS id, 'infinity'::timestamptz AS ends, '-infinity'::date AS starts, "
    "'infinity'::timestamp AS until, date '2024-02-28' AS day "
    "UNION ALL SELECT 2, timestamptz '2024-03-31 00:30:00+00', date '2020-01-01', "
    "timestamp '2024-01-01 12:00:00', date '2024-02-29' ORDER BY id"
)


@pytest.fixture
def plugin(pg_url: str) -> Iterator[ComputePlugin]:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as compute:
        yield compute


@pytest.fixture
def clamped(pg_url: str) -> Iterator[ComputePlugin]:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}, infinity="clamp") as compute:
        yield compute


def _read(plugin: ComputePlugin, sql: str, how: str) -> Any:
    """``rows``: fetchall; ``rows_arrow``: Arrow built from rows; ``copy``: the COPY path."""
    if how == "copy":
        return plugin.execute(sql, arrow=True).to_arrow()
    result = plugin.execute(sql)
    return result.to_arrow() if how == "rows_arrow" else result.fetchall()


READS = ["rows", "rows_arrow", "copy"]


@pytest.mark.parametrize("how", READS)
@pytest.mark.parametrize(
    ("expression", "column"),
    [("'infinity'::timestamptz", "ends"), ("'-infinity'::date", "starts"), ("'infinity'::timestamp", "t")],
)
def test_infinity_is_a_query_error_naming_the_column_and_the_connection_is_kept(
    plugin: ComputePlugin, how: str, expression: str, column: str
) -> None:
    plugin.execute("SELECT 1").fetchall()
    before = plugin.pool_stats()
    with pytest.raises(QueryError) as caught:
        _read(plugin, f"SELECT 1 AS id, {expression} AS {column}", how)
    message = str(caught.value)
    assert f"column '{column}'" in message
    assert "infinity: clamp" in message  # says how to read them
    after = plugin.pool_stats()
    assert after.invalidations == before.invalidations
    assert after.connects == before.connects
    assert plugin.execute("SELECT 41 + 1 AS n").fetchall() == [(42,)]
    assert plugin.pool_stats().connects == before.connects


@pytest.mark.parametrize("how", READS)
def test_clamp_reads_infinity_as_the_largest_and_smallest_values(clamped: ComputePlugin, how: str) -> None:
    got = _read(clamped, OPEN_ENDED, how)
    rows = [tuple(r.values()) for r in got.to_pylist()] if isinstance(got, pa.Table) else got
    assert rows == [
        (1, dt.datetime.max.replace(tzinfo=UTC), dt.date.min, dt.datetime.max, dt.date(2024, 2, 28)),
        (
            2,
            dt.datetime(2024, 3, 31, 0, 30, tzinfo=UTC),
            dt.date(2020, 1, 1),
            dt.datetime(2024, 1, 1, 12),
            dt.date(2024, 2, 29),
        ),
    ]
    if isinstance(got, pa.Table):
        assert got.schema.types == [
            pa.int32(),
            pa.timestamp("us", tz="UTC"),
            pa.date32(),
            pa.timestamp("us"),
            pa.date32(),
        ]


def test_clamp_also_applies_to_rows_of_the_copy_path_and_to_arrays(clamped: ComputePlugin) -> None:
    sql = "SELECT '-infinity'::timestamptz AS t, ARRAY['infinity'::date, date '2024-01-02'] AS ds"
    expected = [(dt.datetime.min.replace(tzinfo=UTC), [dt.date.max, dt.date(2024, 1, 2)])]
    assert clamped.execute(sql).fetchall() == expected
    assert clamped.execute(sql, arrow=True).fetchall() == expected
    assert clamped.execute("SELECT '-infinity'::timestamptz AS t", arrow=True).fetchall() == [expected[0][:1]]


def test_infinity_option_is_checked(pg_url: str) -> None:
    with pytest.raises(ConfigError, match="infinity"):
        create_plugin(pg_url, infinity="biggest")
