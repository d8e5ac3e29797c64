"""The contract suite through the real Databricks connector, against the HTTP-mode Spark Thrift Server
(with the test-only shim of ``fixtures/databricks.py``)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from floe_compute import ComputePlugin, create_plugin
from floe_compute.testing import ComputePluginContract

pytest_plugins = ["databricks_fixtures"]
pytestmark = [pytest.mark.databricks, pytest.mark.xdist_group("spark")]


class TestDatabricksThroughSpark(ComputePluginContract):
    # no shuffle: its job starts with the first fetch and runs for hours on local[2]
    slow_query = "SELECT id FROM range(0, 1000000000000, 1, 2) WHERE id * 2 = -1"

    def series_query(self, n: int) -> str:
        return f"SELECT id AS i, concat('row ', CAST(id AS STRING)) AS label FROM range({n})"

    def endless_query(self) -> str:
        return "SELECT id AS i FROM range(0, 10000000000, 1, 100000)"

    @pytest.fixture
    def compute_factory(self, databricks_server: Any, databricks_url: str) -> Any:
        from databricks_fixtures import databricks_overrides

        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(databricks_url, **databricks_overrides(databricks_server, **overrides))

        return make

    def secret_overrides(self) -> dict[str, Any]:
        # the URL's token is replaced: the server takes any token, the guard needs this one
        return {"access_token": self.secret, "password": None}

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        """The connector holds the statement's command id: it is on the server, which runs or
        has executed it (its job starts with the fetch)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            context = plugin._running.get(query_id)
            cursor = context.cursor if context else None
            if cursor is not None and getattr(cursor, "active_command_id", None) is not None:
                return
            time.sleep(0.02)
        raise AssertionError(f"{query_id} never reached the server")

    def test_a_failing_block_rolls_back(self, plugin: ComputePlugin) -> None:
        """Not here: the Spark Thrift Server has no transactions. What holds instead: the failure
        reaches the caller and the connection is released."""
        plugin.execute("CREATE TABLE contract_rollback (id INTEGER)").close()
        with (
            pytest.raises(RuntimeError, match="caller failed"),
            plugin.execute("INSERT INTO contract_rollback VALUES (1)"),
        ):
            raise RuntimeError("caller failed")
        assert plugin.pool_stats().in_use == 0

    def test_engine_works_with_sqlalchemy_inspect(self, plugin: ComputePlugin) -> None:
        """Without PRIMARY KEY: Spark's session catalog refuses constraints (Unity Catalog has them)."""
        plugin.execute("CREATE TABLE contract_inspect (id INTEGER, name STRING)").close()
        inspector = sa.inspect(plugin.engine)
        assert "contract_inspect" in inspector.get_table_names()
        assert [c["name"] for c in inspector.get_columns("contract_inspect")] == ["id", "name"]
