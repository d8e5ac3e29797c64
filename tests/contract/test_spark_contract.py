"""The contract suite, unchanged, on a real Spark Thrift Server (a fresh database per test)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from floe_compute import ComputePlugin, create_plugin
from floe_compute.testing import ComputePluginContract

pytest_plugins = ["spark_fixtures"]
pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]


class TestSpark(ComputePluginContract):
    # 10^12 rows scanned for nothing: hours for local[2]. No shuffle, so its job starts when the first
    # rows are fetched: a deadline shorter than Spark's planning cannot leave an orphan job behind
    # (a job-group cancel does not cancel jobs submitted after it; see the Spark page of the docs)
    slow_query = "SELECT id FROM range(0, 1000000000000, 1, 2) WHERE id * 2 = -1"

    def series_query(self, n: int) -> str:
        # range() is ordered across its partitions, and results stream partition by partition
        return f"SELECT id AS i, concat('row ', CAST(id AS STRING)) AS label FROM range({n})"

    def endless_query(self) -> str:
        # many small partitions: the first rows arrive after one partition, not after all of them
        return "SELECT id AS i FROM range(0, 10000000000, 1, 100000)"

    @pytest.fixture
    def compute_factory(self, spark_url: str) -> Any:
        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(spark_url, **overrides)

        return make

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        """A Spark job whose description carries the query id runs on the server."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(
                query_id in (job.get("description") or "") and job["status"] == "RUNNING"
                for job in self._jobs()
            ):
                return
            time.sleep(0.1)
        raise AssertionError(f"no running Spark job for {query_id}")

    @pytest.fixture(autouse=True)
    def _keep_jobs(self, spark_jobs: Any) -> None:
        self._jobs = spark_jobs

    def test_engine_works_with_sqlalchemy_inspect(self, plugin: ComputePlugin) -> None:
        """The shared test without its PRIMARY KEY: Spark's session catalog refuses constraints
        ("UNSUPPORTED_FEATURE.TABLE_OPERATION ... does not support CONSTRAINT")."""
        plugin.execute("CREATE TABLE contract_inspect (id INTEGER, name VARCHAR(20))").close()
        inspector = sa.inspect(plugin.engine)
        assert "contract_inspect" in inspector.get_table_names()
        columns = [c["name"] for c in inspector.get_columns("contract_inspect")]
        assert columns == ["id", "name"]
        assert inspector.get_pk_constraint("contract_inspect")["constrained_columns"] == []
