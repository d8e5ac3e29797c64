"""The contract suite through the real Databricks connector, against the HTTP-mode Spark Thrift Server
(with the test-only shim of ``fixtures/databricks.py``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.recording_proxy import RecordingProxy

from floe_compute import ComputePlugin, create_plugin
from floe_compute.engines._databricks_dialect import DatabricksQuery
from floe_compute.testing import ComputePluginContract

pytest_plugins = ["databricks_fixtures"]
pytestmark = [pytest.mark.databricks]


class TestDatabricksThroughSpark(ComputePluginContract):
    loads_atomically = False  # batched INSERTs: a failed or stopped load keeps the earlier ones
    reads_zoned_timestamps_naive = True  # TIMESTAMP rows come as wall times of the session (UTC)
    # 10^12 rows scanned for nothing while the statement executes: hours for local[2]
    slow_query = "SELECT id FROM range(0, 1000000000000, 1, 2) WHERE id * 2 = -1"
    # a statement is five HTTP round trips to the local server: more than 0.2 s on a loaded machine
    late_deadline = 5.0
    # no transactions on the Thrift server: an INSERT is written when it runs, commit() does nothing
    commits_each_statement = True
    writes_return_rows = False  # Databricks SQL has no INSERT ... RETURNING
    # each statement is five HTTP round trips to the local server: 1,600 of them take minutes here
    statements_per_thread = 25
    session_deadline = 5.0  # a SELECT 1 through the Thrift server on two loaded cores can take over 1 s

    def temp_table_sql(self, name: str) -> str:
        return f"CREATE TEMPORARY VIEW {name} AS SELECT 1 AS i"  # the Thrift session's own

    def session_setting(self) -> tuple[str, str, object]:
        return ("SET spark.sql.session.timeZone = Asia/Tokyo", "SELECT current_timezone()", "Asia/Tokyo")

    def series_query(self, n: int) -> str:
        return f"SELECT id AS i, concat('row ', CAST(id AS STRING)) AS label FROM range({n})"

    def endless_query(self) -> str:
        # the statement runs to its end before the first fetch (as on a warehouse): a million rows
        # are ready within seconds and take far longer than any deadline of the suite to stream
        return "SELECT id AS i FROM range(1000000)"

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
        """The server reports the statement's operation as running, asked over a session of our own
        (PyHive) for the command id the connector's cursor holds."""
        from TCLIService import ttypes

        with contextlib.closing(self._server.connect()) as admin:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                context = plugin._running.get(query_id)
                cursor = context.state(DatabricksQuery).cursor if context else None
                command = getattr(cursor, "active_command_id", None)
                if command is not None:
                    ours = command.to_thrift_handle()
                    handle = ttypes.TOperationHandle(
                        ttypes.THandleIdentifier(ours.operationId.guid, ours.operationId.secret),
                        ours.operationType,
                        ours.hasResultSet,
                    )
                    status = admin.client.GetOperationStatus(ttypes.TGetOperationStatusReq(handle))
                    if status.operationState == ttypes.TOperationState.RUNNING_STATE:
                        return
                time.sleep(0.02)
        raise AssertionError(f"the server never showed {query_id} running")

    @pytest.fixture(autouse=True)
    def _keep_server(self, databricks_server: Any) -> None:
        self._server = databricks_server

    def test_engine_works_with_sqlalchemy_inspect(self, plugin: ComputePlugin) -> None:
        """Without PRIMARY KEY: Spark's session catalog refuses constraints (Unity Catalog has them)."""
        plugin.execute("CREATE TABLE contract_inspect (id INTEGER, name STRING)").close()
        inspector = sa.inspect(plugin.engine)
        assert "contract_inspect" in inspector.get_table_names()
        assert [c["name"] for c in inspector.get_columns("contract_inspect")] == ["id", "name"]

    # -- safe retries: a proxy in front of the HTTP Thrift endpoint loses an answer -------------

    @pytest.fixture
    def retry_plugin(self, make_plugin: Any, databricks_server: Any) -> Iterator[ComputePlugin]:
        server = databricks_server
        with RecordingProxy(f"http://{server.host}:{server.port}") as proxy:
            self.retry_proxy = proxy
            yield make_plugin(connection_uri=f"{proxy.url}/{server.http_path}")

    @contextlib.contextmanager
    def losing(self, plugin: ComputePlugin, query_id: str, marker: str) -> Iterator[Callable[[], int]]:
        """The proxy forwards the statement's first ExecuteStatement, then drops its answer."""

        def statement(x: Any) -> bool:
            return b"ExecuteStatement" in x.body and marker.encode() in x.body

        before = len(self.retry_proxy.exchanges)
        rule = self.retry_proxy.drop(statement, times=1)

        def executions() -> int:
            sent = self.retry_proxy.exchanges[before:]
            return len([x for x in sent if statement(x) and not x.injected])

        try:
            yield executions
        finally:
            self.retry_proxy.remove(rule)
