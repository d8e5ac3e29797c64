"""The contract suite, unchanged, on PostgreSQL (a throwaway cluster; a fresh database per test)."""

from __future__ import annotations

from typing import Any

import pytest

from floe_compute import ComputePlugin, create_plugin
from floe_compute.testing import ComputePluginContract

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
