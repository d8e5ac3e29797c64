"""The contract suite, unchanged, on a Spark Connect server driving a real standalone cluster (a
master and two workers; a fresh database per test)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from floe_compute import ComputePlugin, create_plugin
from floe_compute.testing import ComputePluginContract

pytest_plugins = ["spark_connect_fixtures"]
pytestmark = [pytest.mark.spark_connect]


_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# protobuf string fields of length 36: ExecutePlanRequest.operation_id is field 6 (tag 0x32),
# ExecutePlanResponse.operation_id field 12 (tag 0x62)
_REQUEST_OPERATION = re.compile(rb"\x32\x24(" + _UUID + rb")")


def _operation_answer(sent: bytes) -> bytes | None:
    """The ExecutePlanResponse bytes that name the operation the marked request started."""
    found = _REQUEST_OPERATION.search(sent)
    return b"\x62\x24" + found.group(1) if found else None


class TestSparkConnect(ComputePluginContract):
    # a statement's first rows come after Spark plans it and its executors (other JVMs, two
    # loaded cores) run a task
    late_deadline = 10.0
    commits_each_statement = True  # no transactions: a statement is written when it runs
    writes_return_rows = False  # Spark SQL has no INSERT ... RETURNING
    statements_per_thread = 10  # each statement is a gRPC stream to a JVM on two shared cores
    session_deadline = 10.0  # a SELECT 1 on the loaded cluster can take a second
    driver_resends_safely = True  # pyspark reattaches to the statement's operation (see losing())
    loads_atomically = False  # one write per chunk: a failed or stopped load keeps the earlier ones

    # 10^12 rows scanned for nothing: hours for two one-core executors
    slow_query = "SELECT id FROM range(0, 1000000000000, 1, 2) WHERE id * 2 = -1"

    def series_query(self, n: int) -> str:
        return f"SELECT id AS i, concat('row ', CAST(id AS STRING)) AS label FROM range({n})"

    def temp_table_sql(self, name: str) -> str:
        return f"CREATE TEMPORARY VIEW {name} AS SELECT 1 AS i"  # the Connect session's own

    def session_setting(self) -> tuple[str, str, object]:
        return ("SET spark.sql.session.timeZone = Asia/Tokyo", "SELECT current_timezone()", "Asia/Tokyo")

    def endless_query(self) -> str:
        return "SELECT id AS i FROM range(0, 10000000000, 1, 100000)"

    def secret_overrides(self) -> dict[str, Any]:
        """The token, sent as a bearer token (the test server, without authentication, accepts
        any); without TLS only to a loopback address, which the test server is."""
        return {"password": self.secret}

    @pytest.fixture
    def compute_factory(self, connect_url: str) -> Any:
        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(connect_url, **overrides)

        return make

    @pytest.fixture(autouse=True)
    def _keep_cluster(self, connect_cluster: Any) -> None:
        self._cluster = connect_cluster

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        """A job tagged with the query's id runs on the cluster."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for job in self._cluster.jobs():
                if job["status"] == "RUNNING" and any(
                    t.endswith(f"_floe-query-{query_id}") for t in job["jobTags"]
                ):
                    return
            time.sleep(0.05)
        raise AssertionError(f"no job of {query_id} ever ran on the cluster")

    def test_engine_works_with_sqlalchemy_inspect(self, plugin: ComputePlugin) -> None:
        """The shared test without its PRIMARY KEY: Spark's session catalog refuses constraints."""
        plugin.execute("CREATE TABLE contract_inspect (id INTEGER, name VARCHAR(20))").close()
        inspector = sa.inspect(plugin.engine)
        assert "contract_inspect" in inspector.get_table_names()
        assert [c["name"] for c in inspector.get_columns("contract_inspect")] == ["id", "name"]

    # -- safe retries: a TCP relay cuts the channel's connection once the server has the statement.
    # pyspark's client sends each statement as a reattachable ExecutePlan with an operation id of
    # its own and, its stream lost, reattaches to that operation (ReattachExecute) on a new
    # connection: the server runs the statement once and the library sees no error. The cut waits
    # for the server's first answer naming that operation: HTTP/2 bytes sent earlier (a window
    # update) come before the server has the operation, and a reattach then finds none and pyspark
    # rightly sends the statement again.

    @pytest.fixture
    def retry_plugin(self, connect_cluster: Any, connect_url: str) -> Iterator[ComputePlugin]:
        from fixtures.tcp_cut import relayed

        with (
            relayed(connect_url, connect_cluster.host, connect_cluster.port) as (self.relay, url),
            create_plugin(url) as plugin,
        ):
            yield plugin

    @contextlib.contextmanager
    def losing(self, plugin: ComputePlugin, query_id: str, marker: str) -> Iterator[Callable[[], int]]:
        """The relay cuts the connection that sent ``marker``. The statement went out once (a
        reattach does not carry its SQL); the write's executions are its table's rows."""
        relay, made = self.relay, self.relay.cuts_made()
        checked: list[bool] = []

        def sent_once() -> None:  # once: before the write's count, whose SQL names the table too
            if not checked:
                checked.append(True)
                assert relay.cuts_made() == made + 1, "the relay never cut the statement's connection"
                assert relay.sent(marker.encode()) == 1, "pyspark sent the statement again"

        def executions() -> int:
            sent_once()
            with plugin.execute(f"SELECT count(*) FROM {marker}") as result:
                ((count,),) = result.fetchall()
                return int(count)

        relay.cut(marker.encode(), answer=_operation_answer)
        yield executions
        sent_once()
