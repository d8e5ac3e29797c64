"""Reconnection on a real server: killed backends, restarts, a server that is down or never answers."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from floe_compute import ConnectionFailedError, create_plugin
from floe_compute.engines import _postgres_ping

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


def test_killed_pooled_connections_are_replaced_without_an_error(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any
) -> None:
    with create_plugin(pg_url, pool={"size": 3, "max_overflow": 0}) as plugin:
        held = [plugin.execute("SELECT pg_backend_pid()") for _ in range(3)]
        before = {r.fetchall()[0][0] for r in held}
        for r in held:
            r.close()
        assert kill_backends(pg_server, pg_url) == 3
        held = [plugin.execute("SELECT pg_backend_pid()") for _ in range(3)]  # every connection
        after = {r.fetchall()[0][0] for r in held}
        for r in held:
            r.close()
        assert not before & after
        stats = plugin.pool_stats()
        assert (stats.invalidations, stats.reconnects, stats.connects, stats.in_use) == (3, 3, 6, 0)


def test_a_connection_killed_since_its_last_use_is_replaced_before_a_statement_uses_it(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # within the window no ping round trip is made: the socket shows that the server ended it
    monkeypatch.setattr(_postgres_ping, "PING_AFTER_IDLE_S", 3600.0)
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}, retry={"reads": 0}) as plugin:
        plugin.execute("CREATE TABLE kept (i int)").close()
        assert kill_backends(pg_server, pg_url) == 1
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]  # retries off: the first try
        assert kill_backends(pg_server, pg_url) == 1
        plugin.execute("INSERT INTO kept VALUES (1)").close()  # a write, never retried
        assert plugin.execute("SELECT count(*) FROM kept").fetchall() == [(1,)]
        stats = plugin.pool_stats()
        assert (stats.invalidations, stats.reconnects) == (2, 2)


def test_query_running_when_its_backend_dies_says_the_connection_was_lost(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any
) -> None:
    # retries off: with them, this read (lost before its first row) would run again and succeed
    with create_plugin(pg_url, retry={"reads": 0}) as plugin:
        threading.Timer(0.3, kill_backends, [pg_server, pg_url]).start()
        with pytest.raises(ConnectionFailedError, match="the connection was lost") as caught:
            plugin.execute("SELECT pg_sleep(10)").fetchall()
        message = str(caught.value)
        assert caught.value.engine == "postgresql"
        assert "terminating connection due to administrator command" in message
        assert pg_server.password not in message
        assert type(caught.value.__cause__).__module__.startswith("psycopg")
        assert plugin.pool_stats().in_use == 0
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_same_plugin_recovers_after_a_server_restart(own_server: PostgresServer, mode: Any) -> None:
    with create_plugin(own_server.url(), pool={"size": 2}) as plugin:
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]
        own_server.restart(mode)
        for _ in range(5):
            assert plugin.execute("SELECT 2").fetchall() == [(2,)]
        stats = plugin.pool_stats()
        assert stats.invalidations == stats.reconnects >= 1


def test_server_down_fails_fast_with_connection_failed_then_recovers(own_server: PostgresServer) -> None:
    with create_plugin(own_server.url(), timeouts={"connect": 3}) as plugin:
        own_server.stop()
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(ConnectionFailedError, match="Connection refused") as caught:
                plugin.execute("SELECT 1")
            assert time.monotonic() - started < 3
            assert own_server.password not in str(caught.value)
        assert plugin.pool_stats().in_use == 0
        own_server.start()
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]
        assert plugin.pool_stats().reconnects >= 1


def test_server_that_never_answers_hits_the_connect_timeout() -> None:
    """A socket that accepts but never replies: libpq would wait 130 s without connect_timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        plugin = create_plugin(f"postgresql+psycopg://floe:pw@127.0.0.1:{port}/db", timeouts={"connect": 2})
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match=r"timeout.*connect timeout 2s") as caught:
            plugin.connect()
        assert 1.5 < time.monotonic() - started < 6
        assert "pw" not in str(caught.value).replace("password", "")


def test_wrong_password_is_a_connection_error_without_the_password(pg_server: PostgresServer) -> None:
    url = pg_server.url().replace(f":{pg_server.password}@", ":Wr0ng-Secret@")
    with pytest.raises(ConnectionFailedError, match=r"password \S+ failed for user") as caught:
        create_plugin(url).connect()
    assert "Wr0ng-Secret" not in str(caught.value)
    assert "floe:***@" in str(caught.value) or "floe@" in str(caught.value)
