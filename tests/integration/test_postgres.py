"""PostgreSQL specifics on a real server: streaming, scoped timeouts, the cancel race, errors, config."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from floe_compute import (
    ConfigError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    create_plugin,
)
from floe_compute.engines.postgres import PostgresComputePlugin, returns_cursor

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


def test_throwaway_cluster_starts_and_is_removed(own_server: PostgresServer) -> None:
    server = own_server
    base = server.base_dir
    try:
        assert base.is_dir()
        owner = server.psql("SELECT current_setting('data_directory')")
        assert owner.startswith(str(base))
        if os.geteuid() == 0:  # the server refuses to run as root: it runs as postgres
            assert base.stat().st_uid != 0
        with socket.create_connection((server.host, server.port), timeout=2):
            pass
    finally:
        server.cleanup()
    assert not base.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()


def test_plugin_is_found_by_url(pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with create_plugin(plain) as plugin:
        assert isinstance(plugin, PostgresComputePlugin)
        assert plugin.engine.dialect.name == "postgresql"
        assert plugin.engine.driver == "psycopg"
        assert plugin.execute("SELECT 41 + 1").fetchall() == [(42,)]


def test_other_drivers_and_unsupported_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"postgresql\+psycopg2 is not supported.*psycopg 3"):
        create_plugin("postgresql+psycopg2://u@h/db")
    with pytest.raises(ConfigError, match=r"limits.memory_limit: not supported by PostgreSQL.*work_mem"):
        create_plugin("postgresql+psycopg://u@h/db", limits={"memory_limit": "1GB"})
    with pytest.raises(ConfigError, match=r"limits.max_temp_directory_size: .*superuser"):
        create_plugin("postgresql+psycopg://u@h/db", limits={"max_temp_directory_size": "1GB"})
    with pytest.raises(ConfigError, match="settings"):
        create_plugin("postgresql+psycopg://u@h/db", settings={"work_mem; drop": "1"})


def test_five_million_rows_stream_with_flat_memory(pg_url: str) -> None:
    """Peak RSS of a fresh process after 5M rows is that after 200k rows: nothing accumulates."""
    script = f"""
import resource, sys
from floe_compute import create_plugin
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with create_plugin({pg_url!r}) as plugin:
    with plugin.execute("SELECT g, md5(g::text) FROM generate_series(1, 5000000) g") as result:
        n = 0
        for batch in iter(lambda: result.fetchmany(10_000), []):
            n += len(batch)
            if n == 200_000:
                early = rss()
print(n, early, rss())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True
    ).stdout.split()
    rows, early, peak = int(out[0]), float(out[1]), float(out[2])
    assert rows == 5_000_000
    assert peak - early < 16, f"peak RSS grew from {early:.1f} MiB to {peak:.1f} MiB"


def test_results_stream_through_a_server_side_cursor(pg_url: str, pg_server: PostgresServer) -> None:
    app = pg_url.split("application_name=")[1].split("&")[0]
    with create_plugin(pg_url) as plugin, plugin.execute("SELECT g FROM generate_series(1, 100000) g") as r:
        assert len(r.fetchmany(10)) == 10
        seen = pg_server.psql(f"SELECT query FROM pg_stat_activity WHERE application_name = '{app}'")
        assert seen.startswith("FETCH FORWARD")
        assert r.rowcount == 10


def test_statements_a_cursor_cannot_run_are_not_declared(pg_url: str) -> None:
    with create_plugin(pg_url) as plugin:
        plugin.execute("CREATE TABLE t (id int PRIMARY KEY, v text)").close()
        plugin.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')").close()
        with_insert = "WITH x AS (SELECT 3 AS id) INSERT INTO t SELECT id, 'c' FROM x"
        plugin.execute(with_insert).close()
        assert plugin.execute("EXPLAIN SELECT * FROM t").fetchall()
        assert plugin.execute("SHOW search_path").fetchall()[0][0].startswith("t_")
        assert plugin.execute("WITH x AS (SELECT count(*) FROM t) SELECT * FROM x").fetchall() == [(3,)]
    assert returns_cursor("/* a */ (SELECT 1)") and returns_cursor("VALUES (1)")
    assert not returns_cursor("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert returns_cursor("WITH x AS (SELECT 'insert into' AS s) SELECT s FROM x")


def test_statement_timeout_is_scoped_to_the_query(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        assert plugin.execute("SHOW statement_timeout", timeout=2.5).fetchall() == [("2500ms",)]
        with pytest.raises(QueryTimeoutError):
            plugin.execute("SELECT pg_sleep(10)", timeout=0.2).fetchall()
        # same single pooled connection, next checkouts: no timeout left behind
        assert plugin.execute("SHOW statement_timeout").fetchall() == [("0",)]
        assert plugin.execute("SELECT pg_sleep(0.3), 1").fetchall() == [("", 1)]
        assert plugin.pool_stats().connects == 1


def test_timeout_cancels_promptly_and_keeps_the_connection(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        pid = plugin.execute("SELECT pg_backend_pid()").fetchall()[0][0]
        with pytest.raises(QueryTimeoutError) as caught:
            plugin.execute("SELECT pg_sleep(30)", timeout=0.3).fetchall()
        assert 0.3 <= caught.value.elapsed < 1.3
        assert "cancelled on the engine" in str(caught.value)
        # cancelled, not abandoned: the same backend answers right away
        assert plugin.execute("SELECT pg_backend_pid()", timeout=5).fetchall() == [(pid,)]
        stats = plugin.pool_stats()
        assert (stats.in_use, stats.invalidations, stats.connects) == (0, 0, 1)


def test_server_statement_timeout_alone_is_a_timeout_error(pg_url: str) -> None:
    with create_plugin(pg_url, settings={"statement_timeout": 200}) as plugin:
        with pytest.raises(QueryTimeoutError, match="statement timeout") as caught:
            plugin.execute("SELECT pg_sleep(5)").fetchall()
        assert caught.value.elapsed >= 0.2
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]


def test_a_timeout_never_cancels_the_next_query_on_the_connection(pg_url: str) -> None:
    """Deadlines right at the end of the query: the cancel races its completion, the next query on
    the one pooled connection must never be hit by a late cancel."""
    random.seed(7)
    timed_out = 0
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        for _ in range(120):
            try:
                plugin.execute("SELECT pg_sleep(0.02)", timeout=random.uniform(0.012, 0.03)).fetchall()
            except QueryTimeoutError:
                timed_out += 1
            assert plugin.execute("SELECT pg_sleep(0.01), 7", timeout=30).fetchall() == [("", 7)]
        # rarely the signal lands on the timed-out query's own ROLLBACK: that connection is then
        # replaced rather than reused, which is still invisible to the next query
        assert plugin.pool_stats().in_use == 0
    assert timed_out > 0  # (how many complete in time depends on the machine's load)


def test_cancel_from_another_session_is_a_cancelled_error(pg_url: str, pg_server: PostgresServer) -> None:
    app = pg_url.split("application_name=")[1].split("&")[0]
    sql = f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
    with create_plugin(pg_url) as plugin:
        timer = threading.Timer(0.3, pg_server.psql, [sql])
        timer.start()
        with pytest.raises(QueryCancelledError, match="user request"):
            plugin.execute("SELECT pg_sleep(10)").fetchall()
        timer.join()
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]


def test_errors_name_the_problem_and_never_a_value(pg_url: str) -> None:
    with create_plugin(pg_url) as plugin:
        plugin.execute("CREATE TABLE k (id int PRIMARY KEY)").close()
        plugin.execute("INSERT INTO k VALUES (1)").close()
        cases = {
            "INSERT INTO k VALUES (:id)": ({"id": 1}, "duplicate key value violates unique constraint"),
            "SELECT CAST(:v AS int)": ({"v": "hunter2-secret"}, "invalid input syntax for type integer"),
            "SELECT * FROM k WHERE id = :v": ({"v": "s3cr3t-value"}, "invalid input syntax"),
        }
        for sql, (params, expected) in cases.items():
            with pytest.raises(QueryError) as caught:
                plugin.execute(sql, params)
            message = str(caught.value)
            assert expected in message
            assert "SQLSTATE" in message
            for value in params.values():
                assert str(value) not in message or value == 1
            assert not isinstance(caught.value.__cause__, sa.exc.SQLAlchemyError)
        assert plugin.pool_stats().in_use == 0


def test_session_settings_and_limits_apply_to_every_connection(pg_url: str) -> None:
    schema = pg_url.split("search_path%3D")[1]
    overrides = {
        "settings": {"work_mem": "8MB", "search_path": f"{schema}, public", "jit": False},
        "limits": {"threads": 2},
        "pool": {"size": 3},
    }
    with create_plugin(pg_url, **overrides) as plugin:
        held = [plugin.execute("SELECT current_setting('work_mem')") for _ in range(3)]
        assert [r.fetchall() for r in held] == [[("8MB",)]] * 3
        for r in held:
            r.close()
        shown = plugin.execute(
            "SELECT current_setting('search_path'), current_setting('jit'),"
            " current_setting('max_parallel_workers_per_gather')"
        ).fetchall()
        assert shown == [(f"{schema}, public", "off", "2")]


def test_package_of_fixtures_is_importable_standalone() -> None:
    """``fixtures/postgres.py`` is stdlib only: the benchmark imports it without pytest."""
    out = subprocess.run(
        [sys.executable, "-c", "import fixtures.postgres as p; print(p.PostgresServer.__name__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(ROOT))},
    )
    assert out.stdout.strip() == "PostgresServer"


def test_a_sequence_executes_as_a_query(pg_url: str) -> None:
    import sqlalchemy as sa

    with create_plugin(pg_url) as plugin:
        plugin.execute("CREATE SEQUENCE order_ids START 7").close()
        with plugin.execute(sa.Sequence("order_ids")) as result:
            assert result.fetchall() == [(7,)]
        with plugin.execute(sa.Sequence("order_ids")) as result:
            assert result.fetchall() == [(8,)]


def test_only_the_servers_own_statement_timeout_is_a_timeout(pg_url: str) -> None:
    """The server's statement timeout (its interrupt handler) is a timeout; a function that raises
    query_canceled with the same words is a cancel by the statement itself, not a timeout."""
    raised = (
        "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'query_canceled', "
        "MESSAGE = 'canceling statement due to statement timeout'; END $$"
    )
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        with pytest.raises(QueryCancelledError) as caught:
            plugin.execute(raised, timeout=60)
        assert not isinstance(caught.value, QueryTimeoutError)
    # no deadline of the plugin's: only the server's own statement timeout stops it
    with (
        create_plugin(pg_url, settings={"statement_timeout": 200}) as plugin,
        pytest.raises(QueryTimeoutError, match="its own statement timeout"),
    ):
        plugin.execute("SELECT pg_sleep(10)").fetchall()


@pytest.mark.parametrize("tagged", [False, True])
def test_a_short_result_costs_no_extra_round_trips(pg_url: str, tmp_path: Path, tagged: bool) -> None:
    # what goes over the wire (libpq's trace): a result read to its end is not fetched again nor
    # closed on its own; the commit that ends its transaction drops the cursor
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0, "pre_ping": False}) as plugin:
        raw = plugin.engine.raw_connection()
        trace = (tmp_path / "trace").open("w")
        raw.dbapi_connection.pgconn.trace(trace.fileno())  # type: ignore[union-attr]
        raw.close()
        tags = {"job": "t"} if tagged else None
        with plugin.execute("SELECT g FROM generate_series(1, 3) g", tags=tags) as result:
            assert result.fetchall() == [(1,), (2,), (3,)]
        with plugin.execute("SELECT 1") as result:
            assert result.fetchone() == (1,)
            assert result.fetchone() is None
        trace.close()
    sent = [line for line in (tmp_path / "trace").read_text().splitlines() if "\tF\t" in line]
    assert sum('"FETCH' in line for line in sent) == 2, sent
    assert not [line for line in sent if '"CLOSE' in line], sent
