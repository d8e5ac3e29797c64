"""The contract suite, unchanged, on a real Spark Thrift Server (a fresh database per test)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from floe_compute import ComputePlugin, create_plugin
from floe_compute.engines._spark_query import SparkQuery
from floe_compute.testing import ComputePluginContract

pytest_plugins = ["spark_fixtures"]
pytestmark = [pytest.mark.spark]


class TestSpark(ComputePluginContract):
    loads_atomically = False  # batched INSERTs: a failed or stopped load keeps the earlier ones
    reads_zoned_timestamps_naive = True  # TIMESTAMP rows come as wall times of the session (UTC)
    reads_dates_as_text = True  # PyHive gives DATE values as 'YYYY-MM-DD'
    # A statement's first rows come after Spark parses, plans and runs a job: seconds on local[2]
    # with other JVMs on the same two cores, so 0.2 s would pass before execute() returned
    late_deadline = 10.0
    # no transactions on the Thrift server: an INSERT is written when it runs, commit() does nothing
    commits_each_statement = True
    writes_return_rows = False  # Spark SQL has no INSERT ... RETURNING
    # each statement is four Thrift round trips (execute, status, fetch, close) to a JVM sharing two
    # cores with the suite, ~0.2-0.5 s under load: 1600 of them took over the 300 s test timeout
    statements_per_thread = 10
    session_deadline = 5.0  # a SELECT 1 through the Thrift server on two loaded cores can take over 1 s

    def temp_table_sql(self, name: str) -> str:
        return f"CREATE TEMPORARY VIEW {name} AS SELECT 1 AS i"  # the Thrift session's own

    def session_setting(self) -> tuple[str, str, object]:
        return ("SET spark.sql.session.timeZone = Asia/Tokyo", "SELECT current_timezone()", "Asia/Tokyo")

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

    def secret_overrides(self) -> dict[str, Any]:
        """A password needs ``auth="LDAP"`` or ``"CUSTOM"``; the test server (authentication NONE)
        takes any password over the same PLAIN SASL exchange, so the plugin really logs in with it."""
        return {"auth": "LDAP", "password": self.secret}

    @pytest.fixture
    def compute_factory(self, spark_url: str) -> Any:
        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(spark_url, **overrides)

        return make

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        """The server runs a Spark job of the query's statement (its status store lists one in the
        statement's job group), or has executed the statement and waits for the fetch that starts
        its job (an asyncio caller fetches only after this returns). Not while Spark still plans."""
        from spark_fixtures import job_group, running_jobs_of
        from TCLIService import ttypes

        deadline = time.monotonic() + 120
        with contextlib.closing(self._server.connect()) as admin:
            while time.monotonic() < deadline:
                context = plugin._running.get(query_id)
                operation = context.state(SparkQuery).operation if context else None
                if operation is not None:
                    if self._server.ui_url and running_jobs_of(self._server, {job_group(operation)}):
                        return
                    status = admin.client.GetOperationStatus(ttypes.TGetOperationStatusReq(operation))
                    if status.operationState == ttypes.TOperationState.FINISHED_STATE:
                        return
                time.sleep(0.05)
        raise AssertionError(f"the Spark Thrift Server never showed {query_id} running")

    @pytest.fixture(autouse=True)
    def _keep_server(self, spark_server: Any) -> None:
        self._server = spark_server

    def test_engine_works_with_sqlalchemy_inspect(self, plugin: ComputePlugin) -> None:
        """The shared test without its PRIMARY KEY: Spark's session catalog refuses constraints
        ("UNSUPPORTED_FEATURE.TABLE_OPERATION ... does not support CONSTRAINT")."""
        plugin.execute("CREATE TABLE contract_inspect (id INTEGER, name VARCHAR(20))").close()
        inspector = sa.inspect(plugin.engine)
        assert "contract_inspect" in inspector.get_table_names()
        columns = [c["name"] for c in inspector.get_columns("contract_inspect")]
        assert columns == ["id", "name"]
        assert inspector.get_pk_constraint("contract_inspect")["constrained_columns"] == []

    # -- safe retries: a TCP relay cuts the connection once the server has the statement ---------

    @pytest.fixture
    def retry_plugin(self, spark_server: Any, spark_url: str) -> Iterator[ComputePlugin]:
        from fixtures.tcp_cut import relayed

        with (
            relayed(spark_url, spark_server.host, spark_server.port) as (self.relay, url),
            create_plugin(url) as plugin,
        ):
            yield plugin

    @contextlib.contextmanager
    def losing(self, plugin: ComputePlugin, query_id: str, marker: str) -> Iterator[Callable[[], int]]:
        self.relay.cut(marker.encode())
        yield lambda: self.relay.sent(marker.encode())
