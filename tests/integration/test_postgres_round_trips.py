"""Round trips of a short query on PostgreSQL, counted in libpq's protocol trace of the pooled
connection: under concurrency they are what a query costs."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import pytest

from floe_compute import create_plugin
from floe_compute.engines import _postgres_ping
from floe_compute.testing.threads import run_in_thread
from support import cyclic_garbage

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


def _sent(plugin: object, run: object) -> list[str]:
    """The messages the client sent while ``run()`` ran, one per line of libpq's trace."""
    raw = plugin.engine.raw_connection()  # type: ignore[attr-defined]
    pgconn = raw.dbapi_connection.pgconn
    raw.close()
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        try:
            run()  # type: ignore[operator]
        finally:
            pgconn.untrace()
        trace.seek(0)
        return [line.split("\t", 3)[3] for line in trace.read().splitlines() if "\tF\t" in line]


def _round_trips(sent: list[str]) -> list[str]:
    return [m for m in sent if m.startswith(("Query", "Sync"))]


def _select_one(plugin: object) -> Callable[[], None]:
    def run() -> None:
        with plugin.execute("SELECT 1") as result:  # type: ignore[attr-defined]
            assert result.fetchall() == [(1,)]

    return run


def test_a_connection_that_just_answered_is_not_pinged_and_begins_with_its_declare(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0, "pre_ping": True}) as plugin:
        run = _select_one(plugin)
        run()
        sent = _sent(plugin, run)
    trips = _round_trips(sent)
    # the BEGIN, the DECLARE and the cursor's description in one round trip, then the FETCH and
    # the COMMIT: as many as the statement alone (BEGIN, SELECT, COMMIT)
    assert trips[0].startswith('Query\t "BEGIN;DECLARE '), sent
    assert len(trips) == 3, sent


def test_a_connection_idle_longer_than_the_window_is_pinged_with_the_begin(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_postgres_ping, "PING_AFTER_IDLE_S", 0.0)  # every checkout is "idle long"
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0, "pre_ping": True}) as plugin:
        run = _select_one(plugin)
        run()
        sent = _sent(plugin, run)
    trips = _round_trips(sent)
    # the ping is the BEGIN; then the DECLARE (with the description), the FETCH and the COMMIT
    assert trips[0] == 'Query\t "BEGIN"', sent
    assert trips[1].startswith('Query\t "DECLARE '), sent
    assert len(trips) == 4, sent


def test_without_pre_ping_the_begin_still_goes_with_the_declare(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0, "pre_ping": False}) as plugin:
        run = _select_one(plugin)
        run()
        trips = _round_trips(_sent(plugin, run))
    assert len(trips) == 3, trips


def test_a_session_opened_and_closed_unused_ends_cleanly(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0, "pre_ping": True}) as plugin:
        with plugin.execute("SELECT 1") as result:
            result.fetchall()
        with plugin.session():
            pass
        with plugin.execute("SELECT 2") as result:
            assert result.fetchall() == [(2,)]
        assert plugin.pool_stats().in_use == 0


def test_a_declared_query_with_a_trailing_comment_or_semicolon_runs(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        for sql in ("SELECT 1 AS one -- the answer", "SELECT 1 AS one;", "SELECT 1 AS one /* c */"):
            with plugin.execute(sql) as result:
                assert result.columns == ["one"]
                assert result.fetchall() == [(1,)]
        with plugin.execute("SELECT 1 AS one", tags={"team": "a"}) as result:
            assert result.fetchall() == [(1,)]


def test_a_read_shorter_than_the_rows_asked_for_ends_its_transaction_at_once(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0, "timeout": 2}) as plugin:
        result = plugin.execute("SELECT g FROM generate_series(1, 3) g")
        assert result.fetchmany(10) == [(1,), (2,), (3,)]
        # the cursor said it was done: the connection is back, not idle in a transaction
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()") as own:
            assert own.fetchall() == [("active",)]
        assert result.fetchmany(10) == []


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_a_query_leaves_no_reference_cycle_behind(pg_url: str, where: str) -> None:
    """Its objects (context, SQLAlchemy connection, server-side cursor) are freed when the result
    closes, not by the garbage collector (which holds the GIL while it walks them)."""

    def queries() -> None:
        for _ in range(20):
            with plugin.execute("SELECT i FROM generate_series(1, 3) i", tags={"team": "growth"}) as result:
                assert len(result.fetchall()) == 3

    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        plugin.execute("SELECT 1").fetchall()
        with cyclic_garbage("floe_compute", "sqlalchemy", "psycopg") as freed:
            if where == "main thread":
                queries()
            else:
                assert run_in_thread(queries).join(60).error is None
        assert freed == []
