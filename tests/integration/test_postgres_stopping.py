"""Stopping queries and tags on a real PostgreSQL server, seen from the server's side."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from floe_compute import ComputePlugin, QueryCancelledError, create_plugin
from floe_compute.testing.threads import run_in_thread

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


def server_activity(plugin: ComputePlugin, needle: str) -> list[tuple[str, str]]:
    """(state, query) of the other sessions whose statement contains ``needle``, from a separate
    connection (the plugin's pool may be fully in use)."""
    engine = sa.create_engine(plugin.engine.url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT state, query FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND position(:needle in query) > 0"
                ),
                {"needle": needle},
            ).all()
    finally:
        engine.dispose()
    return [(str(state), str(query)) for state, query in rows]


def wait_active(plugin: ComputePlugin, needle: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        active = [q for state, q in server_activity(plugin, needle) if state == "active"]
        if active:
            return active[0]
        assert time.monotonic() < deadline, f"no active statement with {needle!r}"
        time.sleep(0.02)


def test_tags_reach_pg_stat_activity_as_a_sqlcommenter_comment(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        tags = {"dag": "nightly", "team": "growth", "owner": "a b/c'd"}
        read = lambda: plugin.execute("SELECT pg_sleep(30)", query_id="tagged", tags=tags).fetchall()  # noqa: E731
        outcome = run_in_thread(read)
        # a streamed query runs in its FETCH: that is the statement the server shows meanwhile
        statement = wait_active(plugin, "dag='nightly'")
        assert statement.endswith("/*dag='nightly',owner='a%20b%2Fc%27d',team='growth'*/")
        assert plugin.cancel_query("tagged") is True
        assert isinstance(outcome.join().error, QueryCancelledError), outcome


def test_cancel_query_stops_pg_sleep_on_the_server(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        outcome = run_in_thread(
            lambda: plugin.execute(
                "SELECT pg_sleep(30)", query_id="sleepy", tags={"test": "sleepy"}
            ).fetchall()
        )
        wait_active(plugin, "test='sleepy'")
        cancelled = time.monotonic()
        assert plugin.cancel_query("sleepy") is True
        error = outcome.join().error
        assert outcome.ended is not None and outcome.ended - cancelled < 1.0
        assert isinstance(error, QueryCancelledError), outcome
        assert error.query_id == "sleepy"
        assert not [s for s, _ in server_activity(plugin, "test='sleepy'") if s == "active"]
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1") as result:
            assert result.fetchall() == [(1,)]
