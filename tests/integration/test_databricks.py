"""The Databricks plugin through the real connector against the HTTP-mode Spark Thrift Server (with the
test shim): SQLAlchemy tooling, Arrow types, large results, errors without the token."""

from __future__ import annotations

import decimal
import socket
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from databricks_fixtures import TOKEN, databricks_overrides, databricks_url_of, new_databricks_server

from floe_compute import ComputePlugin, create_plugin
from floe_compute.errors import ConfigError, ConnectionFailedError, QueryError, QueryTimeoutError

pytest_plugins = ["databricks_fixtures"]
pytestmark = [pytest.mark.databricks]


@pytest.fixture
def plugin(databricks_server: Any, databricks_url: str) -> Any:
    with create_plugin(databricks_url, **databricks_overrides(databricks_server)) as plugin:
        yield plugin


def test_core_insert_select_and_autoload(plugin: ComputePlugin) -> None:
    plugin.execute("CREATE TABLE people (id INT, name STRING)").close()
    people = sa.Table("people", sa.MetaData(), autoload_with=plugin.engine)
    assert [c.name for c in people.columns] == ["id", "name"]
    with plugin.engine.begin() as conn:
        conn.execute(sa.insert(people).values([{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]))
    with plugin.execute(sa.select(people.c.name).where(people.c.id == 2)) as result:
        assert result.fetchall() == [("grace",)]


def test_arrow_keeps_the_declared_types(plugin: ComputePlugin) -> None:
    sql = (
        "SELECT CAST(1 AS INT) AS i, CAST(2.50 AS DECIMAL(10,2)) AS d, DATE'2024-02-29' AS day, "
        "TIMESTAMP'2024-02-29 12:34:56.123456' AS ts, array(1, 2) AS arr"
    )
    table = plugin.execute(sql).to_arrow()
    assert table.schema.types == [
        pa.int32(), pa.decimal128(10, 2), pa.date32(), pa.timestamp("us"), pa.string()
    ]  # fmt: skip
    assert table.column("arr").to_pylist() == ["[1,2]"]


def test_more_than_100k_rows_arrive(plugin: ComputePlugin) -> None:
    with plugin.execute("SELECT id FROM range(150000)") as result:
        assert sum(batch.num_rows for batch in result.arrow_batches(40_000)) == 150_000
    with plugin.execute("SELECT id FROM range(150000)") as result:
        assert len(result.fetchall()) == 150_000


def test_server_error_has_its_message_and_never_the_token(plugin: ComputePlugin) -> None:
    with pytest.raises(QueryError, match="TABLE_OR_VIEW_NOT_FOUND") as caught:
        plugin.execute("SELECT * FROM no_such_table")
    assert TOKEN not in str(caught.value) and "at org.apache" not in str(caught.value)


def test_unreachable_endpoint_is_a_connection_error_without_the_token(databricks_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    plugin = create_plugin(
        databricks_url,
        connection_uri=f"http://127.0.0.1:{port}/cliservice",
        socket_timeout=5,
        timeouts={"connect": 5},
    )
    with pytest.raises(ConnectionFailedError) as caught:
        plugin.connect()
    assert TOKEN not in str(caught.value)
    plugin.disconnect()


def test_the_deadline_is_the_sessions_timeout_setting(databricks_server: Any, databricks_url: str) -> None:
    """The deadline reaches the server as a session setting (``STATEMENT_TIMEOUT`` on Databricks, Spark's
    query timeout here): a statement run afterwards on that session, outside the plugin and its
    watchdog, is stopped by the server itself."""
    overrides = databricks_overrides(databricks_server, pool={"size": 1, "max_overflow": 0})
    slow = "SELECT id FROM range(0, 1000000000000, 1, 2) WHERE id * 2 = -1"
    with create_plugin(databricks_url, **overrides) as plugin:
        plugin.execute("SELECT 1", timeout=8).close()
        # the pool's only session, without the plugin's watchdog
        with plugin.engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
            conn.exec_driver_sql(slow).all()
    assert "found TIMEDOUT" in str(caught.value)  # the operation's state on the server


def test_tags_travel_as_the_statements_query_tags(
    plugin: ComputePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked on the Thrift request the connector sends (the local server ignores them; a warehouse
    shows them in its query history)."""
    from databricks.sql.backend.thrift_backend import ThriftDatabricksClient
    from databricks.sql.thrift_api.TCLIService import ttypes

    sent: list[Any] = []
    make_request = ThriftDatabricksClient.make_request

    def recording(self: Any, method: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(request, ttypes.TExecuteStatementReq):
            sent.append(request)
        return make_request(self, method, request, *args, **kwargs)

    monkeypatch.setattr(ThriftDatabricksClient, "make_request", recording)
    plugin.execute("SELECT 1", tags={"team": "risk", "dag": "nightly"}).close()
    plugin.execute("SELECT 2").close()
    [tagged] = [r for r in sent if r.statement == "SELECT 1"]
    assert tagged.confOverlay["query_tags"] == "team:risk,dag:nightly"
    [untagged] = [r for r in sent if r.statement == "SELECT 2"]
    assert "query_tags" not in (untagged.confOverlay or {})


def test_a_restarted_server_is_reached_again(databricks_shim: None) -> None:
    """A server of the test's own killed and started again on its port: the pooled session is gone,
    the next query opens a new one (the pool's GetInfo ping finds the old one dead)."""
    server = new_databricks_server()
    try:
        overrides = databricks_overrides(server, pool={"size": 1, "max_overflow": 0}, timeouts={"connect": 5})
        with create_plugin(databricks_url_of("default"), **overrides) as plugin:
            plugin.execute("SELECT 1").close()
            server.kill()
            with pytest.raises(ConnectionFailedError):  # nothing listens: a clear error, not a hang
                plugin.execute("SELECT 1", timeout=30)
            server.start()
            with plugin.execute("SELECT 1", timeout=60) as result:
                assert result.fetchall() == [(1,)]
            stats = plugin.pool_stats()
            assert stats.in_use == 0 and stats.connects >= 2
    finally:
        server.cleanup()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT timeout_ms FROM (SELECT 1 AS a)",  # an unknown column
        "SELECT * FROM no_such_session_timeouts",  # a missing table
        "SELECT raise_error('the upstream call timed out')",  # a message of the user's own
    ],
)
def test_a_message_that_mentions_a_timeout_is_not_a_timeout(
    plugin: ComputePlugin, caplog: pytest.LogCaptureFixture, sql: str
) -> None:
    """Only the statement's state (or the plugin's own deadline) makes a timeout: the words of
    an identifier or a literal in the server's message never do (a caller retries timeouts)."""
    with caplog.at_level("WARNING", logger="floe_compute"), pytest.raises(QueryError) as caught:
        plugin.execute(sql, timeout=60).fetchall()
    assert not isinstance(caught.value, QueryTimeoutError), caught.value
    assert "time" in str(caught.value).lower()  # the server's message is kept
    assert not [r for r in caplog.records if "timed out" in r.getMessage()]


def test_the_servers_own_timeout_is_a_timeout(databricks_server: Any, databricks_url: str) -> None:
    """Told by the statement's state (TIMEDOUT), asked of the server: a session timeout of its own
    (here Spark's, set when the session opens) stops a query the plugin gave no deadline."""
    overrides = databricks_overrides(databricks_server)
    session = {**overrides["session_configuration"], overrides["timeout_setting"]: "1"}
    slow = "SELECT id FROM range(0, 1000000000000, 1, 2) WHERE id * 2 = -1"
    with (
        create_plugin(databricks_url, **{**overrides, "session_configuration": session}) as plugin,
        pytest.raises(QueryTimeoutError, match="its own statement timeout"),
    ):
        plugin.execute(slow).fetchall()


def test_without_a_catalog_the_sessions_current_catalog_is_used(
    databricks_server: Any, databricks_db: str
) -> None:
    url = f"databricks://token:{TOKEN}@127.0.0.1?http_path=/cliservice&schema={databricks_db}"
    with create_plugin(url, **databricks_overrides(databricks_server)) as plugin:
        plugin.execute("CREATE TABLE seen (id INT)").close()
        inspector = sa.inspect(plugin.engine)
        assert "seen" in inspector.get_table_names()
        assert "seen" in inspector.get_table_names(schema=databricks_db)
        assert [c["name"] for c in inspector.get_columns("seen")] == ["id"]
        assert plugin.dbt_profile()["floe"]["outputs"]["dev"]["catalog"] == "spark_catalog"


def test_decimals_are_bound_and_bytes_refused_up_front(plugin: ComputePlugin) -> None:
    """The connector binds a Decimal natively; it has no binary parameter type (it would send the
    bytes as something else and the statement would see NULL), so bytes are refused by name."""
    sql = "SELECT :amount AS amount, :amount * 2 AS twice"
    with plugin.execute(sql, {"amount": decimal.Decimal("1.10")}) as result:
        assert result.fetchall() == [(decimal.Decimal("1.10"), decimal.Decimal("2.20"))]
    with pytest.raises(ConfigError, match=r"parameter 'raw' is bytes.*unhex\(:raw\)") as caught:
        plugin.execute("SELECT :raw AS raw", {"raw": b"\x00\x01'\xff"})
    assert "\\x00" not in str(caught.value)  # never the value
    with plugin.execute("SELECT 1") as result:  # the connection is fine
        assert result.fetchall() == [(1,)]
