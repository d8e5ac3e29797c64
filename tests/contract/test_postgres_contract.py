"""The contract suite, unchanged, on PostgreSQL (a throwaway cluster; a fresh database per test)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floe_compute import ComputePlugin, create_plugin
from floe_compute.testing import ComputePluginContract
from floe_compute.testing.threads import run_in_thread

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres


class TestPostgres(ComputePluginContract):
    slow_query = "SELECT pg_sleep(600)"
    secret = "floe-pw"  # the fixture role's real password (scram-sha-256 checks it)
    session_connection_reused = True

    def session_setting(self) -> tuple[str, str, object]:
        return (
            "SET search_path = contract_schema",
            "SELECT current_setting('search_path')",
            "contract_schema",
        )

    def series_query(self, n: int) -> str:
        return f"SELECT i, 'row ' || i AS label FROM generate_series(0, {n - 1}) AS t(i) ORDER BY i"

    def endless_query(self) -> str:
        # in the select list generate_series streams; in FROM it would be materialized first
        return "SELECT generate_series(1, 10000000000) AS i"

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        from test_postgres_stopping import wait_active

        wait_active(plugin, f"contract_query='{query_id}'")

    @pytest.fixture
    def compute_factory(self, pg_url: str) -> Any:
        url = pg_url

        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(url, **overrides)

        return make

    # -- safe retries: the backend running the statement is ended (pg_terminate_backend) --------

    def retry_read(self) -> tuple[str, list[tuple[Any, ...]]]:
        sql = (
            "SELECT i AS contract_retry_read FROM generate_series(1, 3) AS t(i) "
            "WHERE pg_sleep(0.3) IS NOT NULL"
        )
        return sql, [(1,), (2,), (3,)]

    def retry_write(self) -> str:
        # a sequence never rolls back: it counts the executions of the killed write
        return (
            "INSERT INTO contract_retry_write SELECT i FROM "
            "(SELECT nextval('contract_retry_runs') AS i, pg_sleep(1)) AS s"
        )

    @contextlib.contextmanager
    def losing(self, plugin: ComputePlugin, query_id: str, marker: str) -> Iterator[Callable[[], int]]:
        plugin.execute("CREATE SEQUENCE IF NOT EXISTS contract_retry_runs").close()
        kill = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE state = 'active' "
            f"AND query LIKE '%contract_query=''{query_id}''%' AND pid <> pg_backend_pid()"
        )

        def killer() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with plugin.execute(kill) as result:
                    if result.fetchall()[0][0]:
                        return
                time.sleep(0.02)
            raise AssertionError(f"the statement of {query_id} never ran")

        killed = run_in_thread(killer)

        def executions() -> int:
            sql = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM contract_retry_runs"
            with plugin.execute(sql) as result:
                return int(result.fetchall()[0][0])

        yield executions
        assert killed.join().error is None, killed
