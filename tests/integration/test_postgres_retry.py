"""Safe retries on a real server: a read whose backend is killed before its first row is run again on
a fresh connection; a write, a read in a session, or a read with retries off, is never run again."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from test_postgres_stopping import wait_active

from floe_compute import ConnectionFailedError, create_plugin
from floe_compute.testing.threads import run_in_thread

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer
    from postgres_fixtures import Otel

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres

# three rows, half a second each: the backend is killed while it computes the first one
SLOW_READ = "SELECT i FROM generate_series(1, 3) AS t(i) WHERE pg_sleep(0.5) IS NOT NULL"


def test_a_read_lost_before_its_first_row_is_retried_once(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="floe_compute")
    with create_plugin(pg_url, pool={"size": 2, "max_overflow": 0}) as plugin:
        outcome = run_in_thread(
            lambda: plugin.execute(SLOW_READ, query_id="retried", tags={"test": "retried"}).fetchall()
        )
        wait_active(plugin, "test='retried'")
        assert kill_backends(pg_server, pg_url) >= 1
        assert outcome.join().error is None, outcome
        assert outcome.value == [(1,), (2,), (3,)]
        assert plugin.pool_stats().in_use == 0
    lines = [
        r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "retry" in r.getMessage()
    ]
    assert any("retried" in line and "connection was lost" in line for line in lines), lines
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None for r in warned), [r.getMessage() for r in warned]  # no traceback


def test_a_write_lost_under_way_fails_and_ran_once(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with create_plugin(pg_url) as plugin:
        plugin.execute("CREATE SEQUENCE runs").close()
        plugin.execute("CREATE TABLE written (i bigint)").close()
        outcome = run_in_thread(
            lambda: plugin.execute(
                "INSERT INTO written SELECT i FROM (SELECT nextval('runs') AS i, pg_sleep(1)) AS s",
                query_id="lost-write",
                tags={"test": "write"},
            ).close()
        )
        wait_active(plugin, "test='write'")
        kill_backends(pg_server, pg_url)
        assert isinstance(outcome.join().error, ConnectionFailedError), outcome
        # one line from the library, without a traceback (from it or from SQLAlchemy)
        warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [(r.name, r.exc_info) for r in warned] == [("floe_compute", None)], warned
        assert "lost-write" in warned[0].getMessage()
        assert "the connection was lost" in warned[0].getMessage()
        with plugin.execute("SELECT last_value, is_called FROM runs") as result:
            assert result.fetchall() == [(1, True)]  # executed exactly once (a sequence never rolls back)


@pytest.mark.parametrize("where", ["session", "retries off"])
def test_a_read_is_not_retried_in_a_session_or_with_retries_off(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any, where: str
) -> None:
    overrides: dict[str, Any] = {"retry": {"reads": 0}} if where == "retries off" else {}
    with create_plugin(pg_url, **overrides) as plugin:
        if where == "session":
            session = plugin.session().__enter__()
            execute = session.execute
        else:
            execute = plugin.execute
        outcome = run_in_thread(lambda: execute(SLOW_READ, tags={"test": "once"}).fetchall())
        wait_active(plugin, "test='once'")
        kill_backends(pg_server, pg_url)
        assert isinstance(outcome.join().error, ConnectionFailedError), outcome


def test_a_retry_is_counted_and_is_an_event_of_the_query_span(
    otel: Otel, pg_server: PostgresServer, pg_url: str, kill_backends: Any
) -> None:
    name = f"retry-{uuid.uuid4().hex[:8]}"
    with create_plugin(pg_url, name=name) as plugin:
        outcome = run_in_thread(
            lambda: plugin.execute(SLOW_READ, query_id="counted", tags={"test": "counted"}).fetchall()
        )
        wait_active(plugin, "test='counted'")
        assert kill_backends(pg_server, pg_url) >= 1
        assert outcome.join().error is None, outcome
    assert otel.value("floe.client.query.retries", name, reason="the connection was lost") == 1
    [span] = [s for s in otel.finished_spans(name) if s.attributes.get("floe.query.id") == "counted"]
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert ("db.query.retry", {"reason": "the connection was lost", "attempt": 1}) in events, events
