"""Spark Connect specifics on a real standalone cluster (a master, two one-core workers, the Connect
server as the driver): work on the executors, cancel and Ctrl-C stop the jobs on the cluster, job
tags, sessions, errors, a restarted server. The shared promises are in the contract suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.spark_connect import SparkConnectCluster
from spark_connect_fixtures import new_connect_server

from floe_compute import (
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    create_plugin,
)

pytest_plugins = ["spark_connect_fixtures"]
pytestmark = [pytest.mark.spark_connect]

ENDLESS_COUNT = "SELECT count(*) FROM range(100000000000)"
ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until ``check()`` is truthy (an event on the cluster), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def jobs_tagged(cluster: SparkConnectCluster, tag: str) -> list[dict[str, Any]]:
    """The application's jobs carrying the plugin's job tag ``tag`` (Spark prefixes it with the
    session's id)."""
    return [job for job in cluster.jobs() if any(t.endswith(f"_Tag_{tag}") for t in job.get("jobTags", []))]


def running(cluster: SparkConnectCluster, tag: str) -> list[dict[str, Any]]:
    return [job for job in jobs_tagged(cluster, tag) if job["status"] == "RUNNING"]


def test_the_work_runs_on_executors_in_the_workers_jvms(connect_cluster: SparkConnectCluster) -> None:
    status = connect_cluster.master_status()
    assert len(status["workers"]) == 2 and all(w["state"] == "ALIVE" for w in status["workers"])
    (app,) = [a for a in status["activeapps"] if a["name"] == "floe-spark-connect"]
    before = {e["id"]: e["totalTasks"] for e in connect_cluster.executors()}
    with (
        create_plugin(connect_cluster.url()) as plugin,
        plugin.execute("SELECT count(*) FROM range(0, 10000000, 1, 8)") as result,
    ):
        assert result.fetchall() == [(10_000_000,)]
    # every worker hosts one executor of the Connect server's application: a JVM of its own
    status = connect_cluster.master_status()
    assert sorted(w["coresused"] for w in status["workers"]) == [1, 1]
    assert all(w["host"] == "127.0.0.1" for w in status["workers"])

    def tasks_counted() -> list[dict[str, Any]]:
        found = connect_cluster.executors()
        return found if sum(e["totalTasks"] for e in found) >= 8 + sum(before.values()) else []

    after = wait_for(tasks_counted, "the executors to report the query's tasks")
    # two executors, not the driver (their ids grow when a worker re-registers one)
    assert len(after) == 2 and "driver" not in {e["id"] for e in after}
    assert all(e["totalTasks"] > before.get(e["id"], 0) for e in after), after
    assert app["id"] == connect_cluster.application()


def test_tags_and_query_id_are_job_tags(connect_cluster: SparkConnectCluster, connect_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    with create_plugin(connect_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        query_id = f"tagged-{run}"
        with plugin.execute("SELECT count(*) FROM range(1000)", query_id=query_id, tags={"run": run}) as r:
            assert r.fetchall() == [(1000,)]
        jobs = wait_for(lambda: jobs_tagged(connect_cluster, f"floe-query-{query_id}"), "the tagged job")
        assert all(any(t.endswith(f"_Tag_floe-tag-run={run}") for t in j["jobTags"]) for j in jobs)
        # the next query on the same session carries none of them
        with plugin.execute("SELECT count(*) FROM range(2000)", query_id=f"next-{run}") as r:
            assert r.fetchall() == [(2000,)]
        nxt = wait_for(lambda: jobs_tagged(connect_cluster, f"floe-query-next-{run}"), "the next job")
        assert not [t for j in nxt for t in j["jobTags"] if run in t and "next" not in t]


def test_a_timeout_stops_the_job_on_the_cluster(
    connect_cluster: SparkConnectCluster, connect_url: str
) -> None:
    query_id = f"timeout-{uuid.uuid4().hex[:8]}"
    with create_plugin(connect_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        with pytest.raises(QueryTimeoutError) as caught:
            plugin.execute(ENDLESS_COUNT, timeout=3, query_id=query_id).fetchall()
        assert 3 <= caught.value.elapsed < 6
        tag = f"floe-query-{query_id}"
        assert jobs_tagged(connect_cluster, tag), "the query never ran a job"
        wait_for(lambda: not running(connect_cluster, tag), "the timed-out job to stop", timeout=60)
        with plugin.execute("SELECT 1", timeout=30) as result:  # the only connection is usable
            assert result.fetchall() == [(1,)]


def test_cancel_query_from_another_thread(connect_cluster: SparkConnectCluster, connect_url: str) -> None:
    query_id = f"stop-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            plugin.execute(ENDLESS_COUNT, query_id=query_id).fetchall()
        except BaseException as exc:
            outcome["error"] = exc

    with create_plugin(connect_url) as plugin:
        thread = threading.Thread(target=run)
        thread.start()
        tag = f"floe-query-{query_id}"
        wait_for(lambda: running(connect_cluster, tag), "the query's job to run")
        assert plugin.cancel_query(query_id) is True
        thread.join(30)
        assert isinstance(outcome.get("error"), QueryCancelledError), outcome
        wait_for(lambda: not running(connect_cluster, tag), "the cancelled job to stop", timeout=60)
        assert plugin.pool_stats().in_use == 0


CTRL_C_SCRIPT = """
import sys
from floe_compute import create_plugin
with create_plugin(sys.argv[1]) as plugin:
    print("running", flush=True)
    plugin.execute("SELECT count(*) FROM range(100000000000)", query_id=sys.argv[2]).fetchall()
"""


def test_ctrl_c_stops_the_job_on_the_cluster(connect_cluster: SparkConnectCluster, connect_url: str) -> None:
    query_id = f"ctrlc-{uuid.uuid4().hex[:8]}"
    tag = f"floe-query-{query_id}"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CTRL_C_SCRIPT), connect_url, query_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        wait_for(lambda: running(connect_cluster, tag), "the query's job to run", timeout=120)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    finally:
        proc.kill()
    wait_for(lambda: not running(connect_cluster, tag), "the interrupted job to stop", timeout=60)


def test_a_temp_view_lives_as_long_as_its_connection(connect_url: str) -> None:
    with create_plugin(connect_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        plugin.execute("CREATE TEMPORARY VIEW recent AS SELECT id FROM range(3)").close()
        with plugin.execute("SELECT count(*) FROM recent") as result:  # the same session
            assert result.fetchall() == [(3,)]
    with create_plugin(connect_url) as other, pytest.raises(QueryError, match="TABLE_OR_VIEW_NOT_FOUND"):
        other.execute("SELECT count(*) FROM recent")


def test_errors_carry_the_error_class_and_sqlstate(connect_url: str) -> None:
    with create_plugin(connect_url) as plugin:
        with pytest.raises(QueryError) as caught:
            plugin.execute("SELECT * FROM missing_table")
        message = str(caught.value)
        assert "[TABLE_OR_VIEW_NOT_FOUND]" in message and "SQLSTATE 42P01" in message
        assert "JVM stacktrace" not in message and "\tat org.apache" not in message
        with pytest.raises(QueryError) as caught:
            plugin.execute("SELECT 1 / 0").fetchall()
        assert "[DIVIDE_BY_ZERO]" in str(caught.value) and "SQLSTATE 22012" in str(caught.value)
        # a message that quotes a timeout is not a timeout, nor a connection error
        with pytest.raises(QueryError) as caught:
            plugin.execute("SELECT raise_error('connection timed out')").fetchall()
        assert type(caught.value) is QueryError


def test_connect_fails_within_the_connect_timeout_naming_host_and_port() -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{port}"):
        create_plugin(f"sc://127.0.0.1:{port}", timeouts={"connect": 2}).connect()
    assert time.monotonic() - started < 10


def test_a_restarted_server_is_reached_again() -> None:
    """On a lone Connect server of its own (the shared cluster serves other tests meanwhile)."""
    server = new_connect_server()
    outcome: dict[str, BaseException] = {}
    try:
        with create_plugin(server.url(), pool={"size": 2, "max_overflow": 0}) as plugin:
            with plugin.execute("SELECT 1") as result:
                assert result.fetchall() == [(1,)]

            def run() -> None:
                try:
                    plugin.execute(ENDLESS_COUNT, query_id="inflight").fetchall()
                except BaseException as exc:
                    outcome["error"] = exc

            thread = threading.Thread(target=run)
            thread.start()
            wait_for(lambda: running(server, "floe-query-inflight"), "the in-flight query's job")
            server.stop_connect()
            thread.join(60)
            error = outcome.get("error")
            assert isinstance(error, ConnectionFailedError), outcome
            # gRPC's status (or the connect deadline, under load), never gRPC's repr
            assert ("UNAVAILABLE" in str(error) or "no answer" in str(error)) and "Rendezvous" not in str(
                error
            )
            server.start_connect()
            with plugin.execute("SELECT 42") as result:  # pre-ping found the old session gone
                assert result.fetchall() == [(42,)]
            assert plugin.pool_stats().in_use == 0
            # the pre-ping is an RPC, not a statement: no SQL execution on the (lone) server
            executions = len(server.sql_executions())
            assert executions >= 1  # the statements above are listed: the guard below is not vacuous
            for _ in range(3):
                with plugin.engine.connect():  # each checkout pings
                    pass
            assert len(server.sql_executions()) == executions
    finally:
        server.cleanup()
