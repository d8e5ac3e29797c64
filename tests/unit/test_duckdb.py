"""DuckDB specifics: one database per plugin, file modes, locks, limits and SQLAlchemy tooling."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from floe_compute import (
    ConfigError,
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
    create_plugin,
)
from support import duckdb_connection, duckdb_is_free


def test_memory_database_is_shared_by_every_connection_and_thread() -> None:
    with create_plugin("duckdb:///:memory:", pool={"size": 4}) as plugin:
        held = [plugin.execute("SELECT 1") for _ in range(3)]  # three different pooled connections
        plugin.execute("CREATE TABLE shared AS SELECT * FROM range(5) t(i)").close()
        counts: list[int] = []

        def count() -> None:
            with plugin.execute("SELECT count(*) FROM shared") as result:
                counts.append(result.fetchall()[0][0])

        threads = [threading.Thread(target=count) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in held:
            result.close()
        assert counts == [5, 5, 5, 5]
        assert isinstance(plugin.engine.pool, sa.pool.QueuePool)
        assert plugin.pool_stats().connects >= 4


def test_two_plugins_never_share_a_memory_database() -> None:
    with create_plugin() as first, create_plugin() as second:
        first.execute("CREATE TABLE only_here (x INTEGER)").close()
        with pytest.raises(QueryError, match="only_here"):
            second.execute("SELECT * FROM only_here")


def test_file_database_uses_a_queue_pool_over_one_file(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with create_plugin(f"duckdb:///{path}", pool={"size": 3}) as plugin:
        assert isinstance(plugin.engine.pool, sa.pool.QueuePool)
        plugin.execute("CREATE TABLE t AS SELECT * FROM range(10) r(i)").close()
        results = [plugin.execute("SELECT sum(i) FROM t") for _ in range(3)]
        assert [r.fetchall() for r in results] == [[(45,)]] * 3
        for r in results:
            r.close()
    with create_plugin(f"duckdb:///{path}") as reopened:
        assert reopened.execute("SELECT count(*) FROM t").fetchall() == [(10,)]


def test_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "ro.duckdb"
    with create_plugin(f"duckdb:///{path}") as writer:
        writer.execute("CREATE TABLE t AS SELECT 1 AS x").close()
    with create_plugin(f"duckdb:///{path}?read_only=true") as reader:
        assert reader.config.read_only
        assert reader.execute("SELECT x FROM t").fetchall() == [(1,)]
        with pytest.raises(QueryError, match="read-only"):
            reader.execute("INSERT INTO t VALUES (2)")
        assert reader.pool_stats().in_use == 0


def test_file_locked_by_another_process_names_it(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ConnectionFailedError) as caught:
            create_plugin(f"duckdb:///{path}").connect()
        message = str(caught.value)
        assert f"PID {holder.pid}" in message
        assert "locked by another process" in message
        assert str(path) in message
    finally:
        holder.communicate("")
    assert os.path.exists(path)


def test_limits_apply_to_the_database(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    limits = {
        "memory_limit": "256MB",
        "threads": 2,
        "temp_directory": str(spill),
        "max_temp_directory_size": "1GB",
    }
    with create_plugin("duckdb:///:memory:", limits=limits) as plugin:
        settings = dict(
            plugin.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('memory_limit', 'threads', 'temp_directory', 'max_temp_directory_size')"
            ).fetchall()
        )
    assert settings["threads"] == "2"
    assert settings["memory_limit"] in ("244.1 MiB", "256.0 MB", "244.1MiB")
    assert settings["temp_directory"] == str(spill)
    assert settings["max_temp_directory_size"] in ("953.6 MiB", "1.0 GB", "953.6MiB")


def test_query_over_the_memory_limit_is_a_resource_limit_error(tmp_path: Path) -> None:
    limits = {
        "memory_limit": "64MB",
        "threads": 1,
        "max_temp_directory_size": "1MB",
        "temp_directory": str(tmp_path),
    }
    with create_plugin("duckdb:///:memory:", limits=limits) as plugin:
        with pytest.raises(ResourceLimitError, match=r"limits.memory_limit=64MB"):
            plugin.execute(
                "SELECT list(i) FROM (SELECT i % 100 AS g, repeat('x', 100) || i AS i "
                "FROM range(5000000) t(i)) GROUP BY g"
            ).fetchall()
        assert plugin.pool_stats().in_use == 0
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]


def test_unknown_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no_such_setting"):
        create_plugin("duckdb:///:memory:", settings={"no_such_setting": 1}).connect()


def test_pandas_read_sql_and_sqlalchemy_core_on_the_engine() -> None:
    with create_plugin() as plugin:
        plugin.execute("CREATE TABLE orders AS SELECT i AS id, i * 10 AS amount FROM range(4) t(i)").close()
        frame = pd.read_sql("SELECT * FROM orders ORDER BY id", plugin.engine)
        assert frame["amount"].tolist() == [0, 10, 20, 30]
        orders = sa.Table("orders", sa.MetaData(), autoload_with=plugin.engine)
        query = sa.select(sa.func.sum(orders.c.amount)).where(orders.c.id > 1)
        with plugin.execute(query) as result:
            assert result.fetchall() == [(50,)]


def test_sqlalchemy_core_quotes_duckdb_reserved_words() -> None:
    """``pivot`` and ``qualify`` are reserved in DuckDB, not in PostgreSQL (whose rules the dialect
    inherits): the words come from the plugin's own database, read when it first connects."""
    with create_plugin() as plugin:
        plugin.execute('CREATE TABLE "pivot" ("qualify" INTEGER, plain INTEGER)').close()
        plugin.execute('INSERT INTO "pivot" VALUES (1, 2)').close()
        table = sa.table("pivot", sa.column("qualify"), sa.column("plain"))
        with plugin.execute(sa.select(table.c.qualify, table.c.plain)) as result:
            assert result.fetchall() == [(1, 2)]


def test_timed_out_query_stops_running_inside_duckdb() -> None:
    """Interrupted, not abandoned: once the error is raised, DuckDB no longer runs the query."""
    with create_plugin(limits={"threads": 2}, pool={"size": 1, "max_overflow": 0}) as plugin:
        connection = duckdb_connection(plugin)
        with pytest.raises(QueryTimeoutError):
            plugin.execute("SELECT count(*) FROM range(100000000000)", timeout=0.3).fetchall()
        assert duckdb_is_free(connection)


def test_cancelled_stream_stops_running_inside_duckdb() -> None:
    with create_plugin(limits={"threads": 2}, pool={"size": 1, "max_overflow": 0}) as plugin:
        connection = duckdb_connection(plugin)
        result = plugin.execute("SELECT i, md5(i::VARCHAR) FROM range(100000000000) t(i)")
        threading.Timer(0.3, result.cancel).start()
        with pytest.raises(QueryCancelledError):
            for _ in result:
                pass
        assert duckdb_is_free(connection)


def test_memory_database_used_after_disconnect_is_refused_not_silently_emptied() -> None:
    plugin = create_plugin("duckdb:///:memory:").connect()
    plugin.execute("CREATE TABLE kept (id INTEGER)").close()
    plugin.disconnect()
    with pytest.raises(ConnectionFailedError, match=r"in-memory database.*connect\(\)"):
        plugin.execute("SELECT count(*) FROM kept")
    plugin.connect()  # explicitly: a new, empty database
    with pytest.raises(QueryError, match="kept"):
        plugin.execute("SELECT count(*) FROM kept")
    plugin.disconnect()


def test_file_database_reconnects_after_disconnect(tmp_path: Path) -> None:
    plugin = create_plugin(f"duckdb:///{tmp_path / 'kept.duckdb'}").connect()
    plugin.execute("CREATE TABLE kept AS SELECT 1 AS id").close()
    plugin.disconnect()
    with plugin.execute("SELECT id FROM kept") as result:
        assert result.fetchall() == [(1,)]
    plugin.disconnect()


@pytest.mark.parametrize(
    ("url", "relative", "absolute"),
    [
        ("duckdb://x.db", "duckdb:///x.db", "duckdb:////x.db"),
        ("duckdb://data/w.duckdb", "duckdb:///data/w.duckdb", "duckdb:////data/w.duckdb"),
        ("duckdb://ann:Zq-pw-9x@host:5/w.duckdb", "duckdb:///host/w.duckdb", "duckdb:////host/w.duckdb"),
    ],
)
def test_url_with_a_host_is_refused_not_opened_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, relative: str, absolute: str
) -> None:
    # two slashes make the file name a host: the database used to open in memory, and the
    # tables a job created were gone when the process ended
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        create_plugin(url)
    message = str(caught.value)
    assert f"did you mean {relative}?" in message
    assert absolute in message
    assert "Zq-pw-9x" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_read_shorter_than_the_rows_asked_for_gives_its_connection_back_at_once() -> None:
    with create_plugin("duckdb:///:memory:", pool={"size": 1, "max_overflow": 0, "timeout": 2}) as plugin:
        result = plugin.execute("SELECT i FROM range(3) t(i)")
        assert result.fetchmany(10) == [(0,), (1,), (2,)]
        # the only connection is free again: no further fetch was needed to find the end
        assert plugin.pool_stats().in_use == 0
        assert plugin.execute("SELECT 42").fetchall() == [(42,)]
        assert result.fetchmany(10) == []
        assert result.rowcount == 3
