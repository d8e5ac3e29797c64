"""Spark specifics on a real Spark Thrift Server: types, deadlines and cancel on the server, job
descriptions, restarts, errors, SQLAlchemy tooling. The shared promises are in the contract suite."""

from __future__ import annotations

import datetime as dt
import decimal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from fixtures.spark import SparkThriftServer
from spark_fixtures import job_group, list_jobs, new_server, running_jobs_of

from floe_compute import (
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    create_plugin,
)
from floe_compute.engines._spark_query import SparkQuery

pytest_plugins = ["spark_fixtures"]
pytestmark = [pytest.mark.spark]

ENDLESS_COUNT = "SELECT count(*) FROM range(100000000000)"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until ``check()`` is truthy (an event on the server), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def jobs_of(server: SparkThriftServer, marker: str) -> list[dict[str, Any]]:
    return [job for job in list_jobs(server) if marker in (job.get("description") or "")]


def test_settings_are_set_on_each_connection(spark_url: str) -> None:
    with create_plugin(spark_url, settings={"spark.sql.shuffle.partitions": 7}) as plugin:
        with plugin.execute("SET spark.sql.shuffle.partitions") as result:
            assert result.fetchall() == [("spark.sql.shuffle.partitions", "7")]
        # results stream partition by partition unless the user says otherwise
        with plugin.execute("SET spark.sql.thriftServer.incrementalCollect") as result:
            assert result.fetchall()[0][1] == "true"


def test_arrow_schema_is_the_servers_not_the_first_batchs(spark_url: str) -> None:
    sql = """
        SELECT CAST(id AS INT) AS i, CAST(id * 1.5 AS DECIMAL(12, 2)) AS amount,
               DATE'2024-02-29' + CAST(id AS INT) AS day,
               TIMESTAMP'2024-01-02 03:04:05.123456' AS at, array(id, id) AS pair,
               CASE WHEN id < 5 THEN NULL ELSE id END AS late, id % 2 = 0 AS even,
               CAST(id AS TINYINT) AS tiny, CAST(id AS FLOAT) AS f, X'0102' AS raw
        FROM range(10)"""
    with create_plugin(spark_url) as plugin, plugin.execute(sql) as result:
        reader = result.arrow_batches(5)
        batches = list(reader)
    assert reader.schema == pa.schema(
        [
            ("i", pa.int32()),
            ("amount", pa.decimal128(12, 2)),
            ("day", pa.date32()),
            ("at", pa.timestamp("us")),
            ("pair", pa.string()),  # arrays, maps and structs arrive as JSON text
            ("late", pa.int64()),  # all NULL in the first batch, still BIGINT
            ("even", pa.bool_()),
            ("tiny", pa.int8()),
            ("f", pa.float32()),
            ("raw", pa.binary()),
        ]
    )
    assert [b.num_rows for b in batches] == [5, 5]
    first = batches[0].to_pylist()[1]
    assert first["amount"] == decimal.Decimal("1.50")
    assert first["day"] == dt.date(2024, 3, 1)
    assert first["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert first["pair"] == "[1,1]"
    assert first["late"] is None
    assert batches[1].column("late").to_pylist() == [5, 6, 7, 8, 9]


def test_timeout_cancels_the_spark_job(spark_server: SparkThriftServer, spark_url: str) -> None:
    marker = f"timeout-{uuid.uuid4().hex[:8]}"
    with create_plugin(spark_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        with pytest.raises(QueryTimeoutError) as caught:
            plugin.execute(ENDLESS_COUNT, timeout=2, tags={"test": marker}).fetchall()
        # timing is measured in `make bench`; here: it stopped near the deadline, not after minutes
        assert 2 <= caught.value.elapsed < 4
        # the job was cancelled on the server, not abandoned. The wait is for the event: the
        # server's status store hears of the cancel from its listener bus, which lags by seconds
        # when the JVM shares two loaded cores (a 10 s bound was missed); an abandoned job never stops
        jobs = wait_for(
            lambda: [j for j in jobs_of(spark_server, marker) if j["status"] != "RUNNING"],
            "the timed-out job to stop on the server",
            timeout=60,
        )
        assert {job["status"] for job in jobs} == {"FAILED"}
        assert not [j for j in jobs_of(spark_server, marker) if j["status"] == "RUNNING"]
        # and the only connection runs the next query
        with plugin.execute("SELECT 1", timeout=30) as result:
            assert result.fetchall() == [(1,)]


def test_cancel_query_while_execute_is_blocked(spark_server: SparkThriftServer, spark_url: str) -> None:
    query_id = f"stop-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            plugin.execute(ENDLESS_COUNT, query_id=query_id).fetchall()
        except BaseException as exc:
            outcome["error"] = exc

    with create_plugin(spark_url) as plugin:
        thread = threading.Thread(target=run)
        thread.start()
        wait_for(
            lambda: [j for j in jobs_of(spark_server, query_id) if j["status"] == "RUNNING"],
            "the query's Spark job to run",
        )
        assert plugin.cancel_query(query_id) is True
        thread.join(30)
        assert isinstance(outcome.get("error"), QueryCancelledError), outcome
        wait_for(
            lambda: all(j["status"] != "RUNNING" for j in jobs_of(spark_server, query_id)),
            "the cancelled job to stop",
            timeout=60,  # the status store lags on a loaded machine; an abandoned job never stops
        )
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 2") as result:
            assert result.fetchall() == [(2,)]


def test_tags_are_the_job_description(spark_server: SparkThriftServer, spark_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    with create_plugin(spark_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        tags = {"team": "risk", "run": run}
        with plugin.execute("SELECT count(*) FROM range(1000)", query_id=f"tagged-{run}", tags=tags) as r:
            assert r.fetchall() == [(1000,)]
        jobs = wait_for(lambda: jobs_of(spark_server, f"run={run}"), "the tagged job")
        assert {j["description"] for j in jobs} == {f"floe tagged-{run} team=risk run={run}"}
        # the next query on the same session is not labelled with the previous one's tags
        before = {j["jobId"] for j in list_jobs(spark_server)}
        with plugin.execute("SELECT count(*) FROM range(2000)") as r:
            assert r.fetchall() == [(2000,)]
        new = wait_for(lambda: [j for j in list_jobs(spark_server) if j["jobId"] not in before], "a new job")
        assert all(run not in (j.get("description") or "") for j in new)


def test_errors_carry_sparks_first_line(spark_url: str) -> None:
    with create_plugin(spark_url) as plugin:
        cases = {
            "SELEC 1": "PARSE_SYNTAX_ERROR",
            "SELECT * FROM no_such_table": "TABLE_OR_VIEW_NOT_FOUND",
            "SELECT 'a' + array(1)": "DATATYPE_MISMATCH",
        }
        for sql, error_class in cases.items():
            with pytest.raises(QueryError) as caught:
                plugin.execute(sql).fetchall()
            message = str(caught.value)
            assert error_class in message, message
            assert "\tat " not in message and "\n" not in message  # no JVM stack trace
            assert "HiveSQLException" not in message
        assert plugin.pool_stats().in_use == 0


def test_connect_fails_within_the_connect_timeout_naming_host_and_port() -> None:
    with socket.socket() as silent:  # accepts TCP connections, never answers the handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        plugin = create_plugin(f"spark://127.0.0.1:{port}/default", timeouts={"connect": 1})
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError) as caught:
            plugin.connect()
        assert time.monotonic() - started < 5
        assert f"127.0.0.1:{port}" in str(caught.value)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: refused at once
        with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{port}"):
            create_plugin(f"spark://127.0.0.1:{port}/default").connect()


def test_sqlalchemy_inspect_core_and_pandas(spark_url: str, spark_db: str) -> None:
    with create_plugin(spark_url) as plugin:
        plugin.execute("CREATE TABLE trades (id BIGINT, sym STRING, px DOUBLE) USING parquet").close()
        plugin.execute("CREATE VIEW big_trades AS SELECT * FROM trades WHERE px > 100").close()
        engine = plugin.engine
        inspector = sa.inspect(engine)
        assert inspector.get_table_names() == ["trades"]
        assert inspector.get_view_names() == ["big_trades"]
        assert [c["name"] for c in inspector.get_columns("trades")] == ["id", "sym", "px"]
        assert spark_db in inspector.get_schema_names()
        trades = sa.Table("trades", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(trades), [{"id": 1, "sym": "ABC", "px": 99.5}])
            conn.execute(sa.insert(trades), [{"id": 2, "sym": "XYZ", "px": 120.0}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(trades.c.sym).where(trades.c.px > 100)).fetchall()
        assert [tuple(r) for r in rows] == [("XYZ",)]
        frame = pd.read_sql("SELECT id, sym FROM trades ORDER BY id", engine)
        assert frame.to_dict("list") == {"id": [1, 2], "sym": ["ABC", "XYZ"]}


@pytest.mark.slow
def test_a_restarted_server_is_reached_again() -> None:
    """On a server of its own (the shared one serves the other worker's tests meanwhile)."""
    server = new_server(master="local[1]", driver_memory="512m")
    outcome: dict[str, BaseException] = {}
    try:
        with create_plugin(server.url(), pool={"size": 2, "max_overflow": 0}) as plugin:
            with plugin.execute("SELECT 1") as result:
                assert result.fetchall() == [(1,)]
            query_id = f"inflight-{uuid.uuid4().hex[:8]}"

            def run() -> None:
                try:
                    plugin.execute(ENDLESS_COUNT, query_id=query_id).fetchall()
                except BaseException as exc:
                    outcome["error"] = exc

            def on_server() -> bool:
                context = plugin._running.get(query_id)
                return context is not None and context.state(SparkQuery).operation is not None

            thread = threading.Thread(target=run)
            thread.start()
            wait_for(on_server, "the in-flight statement to reach the server")
            try:
                server.kill()
                thread.join(60)
                assert isinstance(outcome.get("error"), ConnectionFailedError), outcome
            finally:
                server.start()
            with plugin.execute("SELECT 42") as result:
                assert result.fetchall() == [(42,)]
            stats = plugin.pool_stats()
            assert stats.invalidations >= 1 and stats.in_use == 0
            assert plugin.health_check().status != "unhealthy"  # degraded only means a slow ping
    finally:
        server.cleanup()


@pytest.mark.slow
def test_failed_login_is_a_connection_error_without_the_secret() -> None:
    """A server with LDAP authentication whose directory is unreachable: every login fails."""
    with socket.socket() as nothing:
        nothing.bind(("127.0.0.1", 0))
        ldap_port = nothing.getsockname()[1]
    server = new_server(
        hiveconf={
            "hive.server2.authentication": "LDAP",
            "hive.server2.authentication.ldap.url": f"ldap://127.0.0.1:{ldap_port}",
        },
        master="local[1]",
        driver_memory="512m",
        warm_up=False,
    )
    try:
        plugin = create_plugin(server.url(user="etl"), auth="LDAP", password="s3cret-pw")
        with pytest.raises(ConnectionFailedError) as caught:
            plugin.connect()
        assert "s3cret-pw" not in str(caught.value) and "s3cret-pw" not in repr(caught.value)
        assert f"127.0.0.1:{server.port}" in str(caught.value)
    finally:
        server.cleanup()


def test_rows_stream_and_closing_early_stops_the_job(spark_server: SparkThriftServer, spark_url: str) -> None:
    """10^10 rows: the first batches arrive while the server computes partition after partition,
    and closing the result early stops the query's job. (Flat memory over 50M rows: `make bench`.)"""
    query_id = f"stream-{uuid.uuid4().hex[:8]}"
    sql = "SELECT id AS i FROM range(0, 10000000000, 1, 100000)"
    with create_plugin(spark_url) as plugin:
        with plugin.execute(sql, query_id=query_id, batch_size=1000) as result:
            batches = result.arrow_batches()
            first = [next(batches) for _ in range(3)]
        assert [b.num_rows for b in first] == [1000, 1000, 1000]
        assert first[2].column("i").to_pylist()[-1] == 2999
        assert plugin.pool_stats().in_use == 0
    wait_for(
        lambda: all(j["status"] != "RUNNING" for j in jobs_of(spark_server, query_id)),
        "the closed result's job to stop",
        timeout=30,
    )


def run_in_thread(
    plugin: Any, sql: str, query_id: str, timeout: float | None
) -> tuple[threading.Thread, dict[str, BaseException]]:
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            plugin.execute(sql, query_id=query_id, timeout=timeout).fetchall()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)  # a stuck query must not hang pytest
    thread.start()
    return thread, outcome


RACES = {  # each query's Spark work starts at a different point of the statement's life
    "shuffle": ENDLESS_COUNT,  # a shuffle stage that adaptive execution submits while planning
    "scan": "SELECT id FROM range(0, 1000000000000, 1, 2) WHERE id * 2 = -1",  # one job at fetch
    "stream": "SELECT id AS i FROM range(0, 10000000000, 1, 100000)",  # a job per fetch
}


def test_a_cancel_at_any_moment_leaves_nothing_running(
    spark_server: SparkThriftServer, spark_url: str
) -> None:
    """Cancels and deadlines land while Spark plans, starts or fetches the statement. Each query
    ends at once for its caller, and none of their jobs is left running on the server (a job left
    behind keeps both cores of local[2] busy, and every later query waits behind it)."""
    run = uuid.uuid4().hex[:8]
    delays = (0.0, 0.05, 0.15, 0.3, 0.6)
    states: list[SparkQuery] = []  # what each query's cancel knew: its operation handle
    with create_plugin(spark_url, pool={"size": 2, "max_overflow": 0}) as plugin:
        plugin.execute("SELECT 1").close()  # the session is open and set up
        begin_query = plugin.begin_query

        def recording(connection: Any, context: Any) -> None:
            states.append(context.state(SparkQuery))
            begin_query(connection, context)

        plugin.begin_query = recording  # type: ignore[method-assign]
        for i, (kind, delay) in enumerate((k, d) for d in delays for k in RACES):
            query_id = f"race-{run}-{kind}-{i}"
            by_deadline = i % 2 == 1
            timeout = delay + 0.01 if by_deadline else None
            thread, outcome = run_in_thread(plugin, RACES[kind], query_id, timeout)
            if not by_deadline:
                wait_for(lambda qid=query_id: plugin._running.get(qid), "the query to start")
                time.sleep(delay)  # the moment of the cancel, not a wait for an event
                plugin.cancel_query(query_id)
            thread.join(60)
            assert not thread.is_alive(), f"{query_id}: the query's thread never ended"
            expected = QueryTimeoutError if by_deadline else QueryCancelledError
            assert isinstance(outcome.get("error"), expected), (query_id, outcome)
        # operations cancelled while they executed are closed a few seconds later (late shuffle
        # stages); then no job of these queries may be running
        wait_for(lambda: not plugin._canceller._pending, "the cancelled operations to be closed", 30)
        groups = {job_group(state.operation) for state in states if state.operation is not None}
        wait_for(
            lambda: not running_jobs_of(spark_server, groups),
            "no job of the cancelled queries to be running",
            timeout=30,
        )
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT count(*) FROM range(1000)", timeout=60) as result:
            assert result.fetchall() == [(1000,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT CAST('TIMEDOUT' AS INT)",  # a literal the server's message quotes
        "SELECT raise_error('upstream TIMEDOUT')",  # a message of the user's own
        "SELECT timed_out FROM (SELECT 1 AS a)",  # an identifier the message names
    ],
)
def test_a_message_that_mentions_a_timeout_is_not_a_timeout(spark_url: str, sql: str) -> None:
    """Only the operation's state (or the plugin's own deadline) makes a timeout: an error whose
    text quotes a literal or an identifier is an ordinary, permanent query error."""
    with create_plugin(spark_url) as plugin, pytest.raises(QueryError) as caught:
        plugin.execute(sql).fetchall()
    assert not isinstance(caught.value, QueryTimeoutError), caught.value
    assert "TIMEDOUT" in str(caught.value).upper().replace("_", "")  # the server's message is kept


def test_bytes_and_decimal_parameters_are_bound(spark_url: str) -> None:
    """As Spark SQL literals (X'..', ..BD), exact: PyHive decodes bytes as UTF-8 and refuses a Decimal."""
    raw, amount = b"\x00\x01'\xff", decimal.Decimal("1.10")
    tiny, big = decimal.Decimal("1E-7"), decimal.Decimal("-12345678901234567890.5")
    sql = "SELECT :raw AS raw, :amount AS amount, :amount * 2 AS twice, :tiny AS tiny, :big AS big"
    params = {"raw": raw, "amount": amount, "tiny": tiny, "big": big}
    with create_plugin(spark_url) as plugin, plugin.execute(sql, params) as result:
        assert result.fetchall() == [(raw, amount, decimal.Decimal("2.20"), tiny, big)]
