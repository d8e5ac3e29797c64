"""OpenTelemetry on a real server: pool metrics agree with pool_stats() under load, spans cover a
query's whole life, and a Prometheus scrape finds the pool metrics."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from floe_compute import PoolExhaustedError, QueryError, QueryTimeoutError, create_plugin

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer
    from postgres_fixtures import Otel

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_pool_metrics_match_pool_stats_under_load(
    otel: Otel, pg_server: PostgresServer, pg_url: str, kill_backends: Any
) -> None:
    name = f"load-{uuid.uuid4().hex[:8]}"
    # retries off: a retried read checks out again, and the test counts one wait per execute()
    plugin = create_plugin(
        pg_url, name=name, pool={"size": 4, "max_overflow": 0, "timeout": 0.3}, retry={"reads": 0}
    )
    queries = 0
    with plugin:
        # saturated: 4 held, 2 callers waiting
        held = [plugin.execute("SELECT 1") for _ in range(4)]
        gave_up: list[BaseException] = []

        def wait_in_vain() -> None:
            with pytest.raises(PoolExhaustedError) as caught:
                plugin.execute("SELECT 1")
            gave_up.append(caught.value)

        waiters = [threading.Thread(target=wait_in_vain) for _ in range(2)]
        for waiter in waiters:
            waiter.start()
        wait_for(lambda: plugin.pool_stats().waiting == 2)
        stats = plugin.pool_stats()
        assert otel.value("db.client.connection.count", name, db_client_connection_state="used") == 4
        assert otel.value("db.client.connection.count", name, db_client_connection_state="idle") == 0
        assert otel.value("db.client.connection.pending_requests", name) == stats.waiting == 2
        for waiter in waiters:
            waiter.join()
        assert len(gave_up) == 2  # both gave up after pool.timeout
        for result in held:
            result.close()
        queries += 6

        # concurrent load, with every backend killed once in the middle
        errors: list[BaseException] = []

        def work() -> None:
            for _ in range(100):
                try:
                    with plugin.execute("SELECT pg_sleep(0.001)") as result:
                        result.fetchall()
                except PoolExhaustedError:
                    pass
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        kill_backends(pg_server, pg_url)
        for thread in threads:
            thread.join()
        queries += 800
        assert all("connection was lost" in str(e) for e in errors)
        with pytest.raises(QueryTimeoutError):
            plugin.execute("SELECT pg_sleep(5)", timeout=0.1).fetchall()
        queries += 1
        assert plugin.health_check().healthy
        queries += 1

        stats = plugin.pool_stats()
        assert stats.timeouts >= 2 and stats.reconnects >= 1
        idle = otel.value("db.client.connection.count", name, db_client_connection_state="idle")
        used = otel.value("db.client.connection.count", name, db_client_connection_state="used")
        assert (idle, used) == (stats.idle, stats.in_use) == (4, 0)
        assert otel.value("db.client.connection.max", name) == stats.max == 4
        assert otel.value("db.client.connection.idle.max", name) == stats.size == 4
        assert otel.value("db.client.connection.pending_requests", name) == 0
        assert otel.value("db.client.connection.timeouts", name) == stats.timeouts
        assert otel.value("floe.compute.reconnects", name) == stats.reconnects
        assert otel.value("floe.compute.query.timeouts", name) == 1
        assert otel.value("floe.compute.health", name, state="healthy") == 1
        assert otel.value("floe.compute.health", name, state="unhealthy") == 0
        assert otel.value("db.client.connection.create_time", name).count == stats.connects
        # one wait per execute(), including those that gave up
        assert otel.value("db.client.connection.wait_time", name).count == queries
        assert otel.value("db.client.connection.use_time", name).count >= stats.checkouts
        durations = otel.points("db.client.operation.duration", name)
        assert sum(p.count for p in durations) == queries
        assert {p.attributes["db.system.name"] for p in durations} == {"postgresql"}
        failed = {p.attributes.get("error.type") for p in durations} - {None}
        assert "QueryTimeoutError" in failed and "PoolExhaustedError" in failed
    # a disconnected plugin stops reporting its pool
    assert otel.points("db.client.connection.count", name) == []


def test_one_span_per_query_covers_fetching_and_never_a_value(otel: Otel, pg_url: str) -> None:
    name = f"spans-{uuid.uuid4().hex[:8]}"
    with create_plugin(pg_url, name=name) as plugin:
        plugin.execute("CREATE TABLE orders (id int, secret text)").close()
        with plugin.execute("SELECT id FROM orders WHERE secret = :s", {"s": "hunter2-value"}) as result:
            time.sleep(0.2)
            result.fetchall()
        with pytest.raises(QueryError):
            plugin.execute("SELECT * FROM missing WHERE x = :v", {"v": "other-secret-value"})
        with pytest.raises(QueryTimeoutError):
            plugin.execute("SELECT pg_sleep(5)", timeout=0.2).fetchall()
    spans = otel.finished_spans(name)
    assert [s.name for s in spans] == ["CREATE TABLE orders", "SELECT orders", "SELECT missing", "SELECT"]
    _, select, missing, slow = spans
    assert select.attributes["db.system.name"] == "postgresql"
    assert select.attributes["db.operation.name"] == "SELECT"
    assert select.attributes["db.query.summary"] == "SELECT orders"
    assert str(select.attributes["floe.query.id"]).startswith("q-")
    assert (select.end_time - select.start_time) / 1e9 >= 0.2  # fetching included
    assert "error.type" not in select.attributes
    assert missing.attributes["error.type"] == "QueryError"
    assert slow.attributes["error.type"] == "QueryTimeoutError"
    assert [e.name for e in slow.events] == ["db.query.timeout"]
    dumped = "".join(s.to_json() for s in spans)
    for secret in ("hunter2-value", "other-secret-value", "floe-pw"):
        assert secret not in dumped


def test_async_query_spans_are_children_of_the_callers_span(otel: Otel, pg_url: str) -> None:
    """As with the blocking API: the worker threads run in the awaiting task's context."""
    from opentelemetry import trace

    name = f"async-{uuid.uuid4().hex[:8]}"
    tracer = trace.get_tracer("test")

    async def handler() -> int:
        with tracer.start_as_current_span("request"):
            async with plugin.aexecute("SELECT 1 AS one") as result:
                return len(await result.fetchall())

    with create_plugin(pg_url, name=name) as plugin:
        assert asyncio.run(handler()) == 1
    [query] = otel.finished_spans(name)
    [request] = [s for s in otel.spans.get_finished_spans() if s.name == "request"][-1:]
    assert query.parent is not None
    assert query.parent.span_id == request.context.span_id
    assert query.context.trace_id == request.context.trace_id


def test_telemetry_can_be_switched_off(otel: Otel, pg_url: str) -> None:
    name = f"off-{uuid.uuid4().hex[:8]}"
    with create_plugin(pg_url, name=name, telemetry=False) as plugin:
        plugin.execute("SELECT 1").fetchall()
        assert otel.points("db.client.connection.count", name) == []
    assert otel.points("db.client.operation.duration", name) == []
    assert otel.finished_spans(name) == []


def test_prometheus_scrape_shows_the_pool(otel: Otel, pg_url: str) -> None:
    name = f"prom-{uuid.uuid4().hex[:8]}"
    with create_plugin(pg_url, name=name, pool={"size": 3}) as plugin:
        plugin.execute("SELECT 1").fetchall()
        with urllib.request.urlopen(otel.prometheus_url, timeout=10) as response:
            page = response.read().decode()
    label = f'db_client_connection_pool_name="{name}"'
    mine = [line for line in page.splitlines() if label in line]
    for metric in (
        "db_client_connection_count",
        "db_client_connection_max",
        "db_client_connection_idle_max",
        "db_client_connection_pending_requests",
        "db_client_connection_wait_time_seconds_bucket",
        "db_client_connection_use_time_seconds_bucket",
        "db_client_operation_duration_seconds_bucket",
    ):
        assert any(line.startswith(metric + "{") for line in mine), metric
    assert any(line.startswith("db_client_connection_max{") and line.endswith(" 13.0") for line in mine)
    assert "floe-pw" not in page
