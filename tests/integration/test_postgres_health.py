"""Health on a real server: saturated pool and slow ping are degraded, a dead server is unhealthy,
and the background monitor notices, logs once, and forces fresh connections."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from floe_compute import HealthState, create_plugin

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_saturated_pool_is_degraded_without_queueing(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 2, "max_overflow": 0, "timeout": 30}) as plugin:
        held = [plugin.execute("SELECT 1") for _ in range(2)]
        waiter = threading.Thread(target=lambda: plugin.execute("SELECT 2").close())
        waiter.start()
        wait_for(lambda: plugin.pool_stats().waiting == 1)
        started = time.monotonic()
        status = plugin.health_check()
        assert time.monotonic() - started < 1  # not stuck behind the waiting caller
        assert status.status is HealthState.DEGRADED
        assert status.message == "pool saturated: 2/2 in use, 1 waiting"
        for result in held:
            result.close()
        waiter.join()
        assert plugin.health_check().status is HealthState.HEALTHY


def test_slow_ping_is_degraded(pg_url: str) -> None:
    with create_plugin(pg_url, health={"slow_ping_ms": 0.001}) as plugin:
        status = plugin.health_check()
    assert status.status is HealthState.DEGRADED
    assert "ping took" in status.message and "threshold 0.001 ms" in status.message


def test_dead_server_is_unhealthy_with_the_reason(own_server: PostgresServer) -> None:
    with create_plugin(own_server.url()) as plugin:
        assert plugin.health_check().status is HealthState.HEALTHY
        own_server.stop()
        status = plugin.health_check()
        assert status.status is HealthState.UNHEALTHY
        assert "Connection refused" in status.message
        assert own_server.password not in status.message
        own_server.start()
        assert plugin.health_check().status is HealthState.HEALTHY


def test_monitor_records_changes_logs_each_once_and_reconnects(
    own_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = create_plugin(own_server.url(), pool={"size": 2}, health={"monitor_interval": 0.05})
    with caplog.at_level(logging.INFO, logger="floe_compute.health"), plugin:
        monitor = plugin.monitor
        assert monitor is not None
        wait_for(lambda: monitor.last is not None)
        held = [plugin.execute("SELECT 1") for _ in range(2)]
        for result in held:
            result.close()  # two idle pooled connections, about to die with the server
        own_server.stop("immediate")
        wait_for(lambda: monitor.last is not None and monitor.last.status is HealthState.UNHEALTHY)
        time.sleep(0.3)  # several more failed checks: still one change, one log line
        discarded = plugin.pool_stats().invalidations
        assert discarded >= 2
        own_server.start()
        wait_for(lambda: monitor.last is not None and monitor.last.status is HealthState.HEALTHY)
        assert [s.status for s in monitor.changes] == [
            HealthState.HEALTHY,
            HealthState.UNHEALTHY,
            HealthState.HEALTHY,
        ]
        assert plugin.pool_stats().reconnects >= 1
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]
    thread_names = [t.name for t in threading.enumerate()]
    assert "floe-compute-health-postgresql" not in thread_names  # stopped with the plugin
    lines = [r.getMessage() for r in caplog.records if "changed to" in r.getMessage()]
    assert [line.split(" changed to ")[1].split(":")[0] for line in lines] == [
        "healthy",
        "unhealthy",
        "healthy",
    ]
    assert own_server.password not in caplog.text
