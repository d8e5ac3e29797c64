"""Snowflake on the fakesnow emulator: auth, errors, Arrow and SQLAlchemy tooling, end to end.

Where the emulator cannot answer as Snowflake does (it accepts any password), the recording proxy
answers with the payload Snowflake documents instead, and the test says so.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from fixtures.recording_proxy import RecordingProxy
from fixtures.snowflake import LOGIN_REQUEST, QUERY_REQUEST, FakesnowServer, query_request, write_rsa_key

from floe_compute import ConnectionFailedError, QueryError, create_plugin

pytest_plugins = ["snowflake_fixtures"]
pytestmark = [pytest.mark.snowflake]

PASSWORD = "pw-Do-Not-Show-7"


@pytest.fixture
def plugin(snowflake_database: str, fakesnow_server: FakesnowServer) -> Any:
    url = f"snowflake://fake:{PASSWORD}@acct/{snowflake_database}/tests"
    with create_plugin(url, **fakesnow_server.endpoint, pool={"size": 2}) as plugin:
        yield plugin


# -- errors -----------------------------------------------------------------------------------


def test_syntax_error_and_missing_table_on_the_emulator(plugin: Any) -> None:
    with pytest.raises(QueryError) as syntax:
        plugin.execute("SELEC 1")
    assert "Snowflake error 001003 (syntax error)" in str(syntax.value)
    assert "SQLSTATE 42000" in str(syntax.value)
    with pytest.raises(QueryError) as missing:
        plugin.execute("SELECT * FROM orders_nowhere")
    assert "Snowflake error 002003" in str(missing.value)
    assert "ORDERS_NOWHERE" in str(missing.value)
    for error in (syntax.value, missing.value):
        assert PASSWORD not in str(error)
        assert error.query_id in str(error)
    assert plugin.pool_stats().in_use == 0


# The payloads Snowflake documents for these failures (HTTP 200, "success": false), as the proxy
# answers them in place of the emulator.
SNOWFLAKE_ERRORS = {
    "syntax": {
        "data": {
            "errorCode": "001003",
            "sqlState": "42000",
            "queryId": "01b8a1c2-0000-4a2b-0000-0001aa0f5e21",
        },
        "code": "001003",
        "message": "SQL compilation error:\nsyntax error line 1 at position 0 unexpected 'SELEC'.",
        "success": False,
        "headers": None,
    },
    "missing": {
        "data": {
            "errorCode": "002003",
            "sqlState": "42S02",
            "queryId": "01b8a1c2-0000-4a2b-0000-0001aa0f5e22",
        },
        "code": "002003",
        "message": "SQL compilation error:\nObject 'ORDERS' does not exist or not authorized.",
        "success": False,
        "headers": None,
    },
}
WRONG_PASSWORD = {
    "data": {"nextAction": None, "authnMethod": "USERNAME_PASSWORD", "inFlightCtx": None},
    "code": "390100",
    "message": "Incorrect username or password was specified.",
    "success": False,
    "headers": None,
}


@pytest.mark.parametrize(
    ("case", "sql", "expected"),
    [
        (
            "syntax",
            "SELEC 1",
            "syntax error line 1 at position 0 unexpected 'SELEC'. (Snowflake error 001003",
        ),
        (
            "missing",
            "SELECT * FROM orders",
            "Object 'ORDERS' does not exist or not authorized. (Snowflake error 002003",
        ),
    ],
)
def test_documented_query_errors_through_the_proxy(
    case: str,
    sql: str,
    expected: str,
    snowflake_url: str,
    snowflake_proxy: RecordingProxy,
    proxied_endpoint: dict[str, Any],
) -> None:
    body = SNOWFLAKE_ERRORS[case]
    snowflake_proxy.inject(query_request(sql), status=200, body=body)
    with create_plugin(snowflake_url, password=PASSWORD, **proxied_endpoint) as plugin:
        with pytest.raises(QueryError) as caught:
            plugin.execute(sql)
        message = str(caught.value)
        assert expected in message
        assert f"SQLSTATE {body['data']['sqlState']}" in message
        assert f"Snowflake query id {body['data']['queryId']}" in message  # to look it up in QUERY_HISTORY
        assert PASSWORD not in message
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1") as result:  # the session is still good
            assert result.fetchall() == [(1,)]


def test_wrong_password_is_a_connection_error_without_the_password(
    snowflake_url: str, snowflake_proxy: RecordingProxy, proxied_endpoint: dict[str, Any]
) -> None:
    # fakesnow accepts any password: the proxy answers the login as Snowflake does
    snowflake_proxy.inject(lambda x: x.path == LOGIN_REQUEST, status=200, body=WRONG_PASSWORD)
    plugin = create_plugin(snowflake_url, password=PASSWORD, **proxied_endpoint)
    with pytest.raises(ConnectionFailedError) as caught:
        plugin.connect()
    message = str(caught.value)
    assert "Incorrect username or password was specified." in message
    assert "390100" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(caught.value.__cause__)
    login = snowflake_proxy.wait_for(lambda x: x.path == LOGIN_REQUEST)
    assert login.json["data"]["PASSWORD"] == PASSWORD  # it was really sent, and never shown


def test_connection_refused_names_host_and_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    plugin = create_plugin(
        f"snowflake://fake:{PASSWORD}@acct/db/s",
        host="127.0.0.1",
        port=port,
        protocol="http",
        timeouts={"connect": 1},
    )
    with pytest.raises(ConnectionFailedError) as caught:
        plugin.connect()
    assert f"http://127.0.0.1:{port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_tls_error_names_host_and_port(fakesnow_server: FakesnowServer) -> None:
    # https to a plain-http server: the TLS handshake fails
    plugin = create_plugin(
        f"snowflake://fake:{PASSWORD}@acct/db/s",
        host="127.0.0.1",
        port=fakesnow_server.port,
        protocol="https",
        timeouts={"connect": 1},
    )
    with pytest.raises(ConnectionFailedError) as caught:
        plugin.connect()
    assert f"https://127.0.0.1:{fakesnow_server.port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


# -- key-pair auth ------------------------------------------------------------------------------


def test_key_pair_auth_end_to_end(
    tmp_path: Path, snowflake_url: str, snowflake_proxy: RecordingProxy, proxied_endpoint: dict[str, Any]
) -> None:
    key = tmp_path / "rsa_key.p8"
    write_rsa_key(key, b"phrase-Hidden-9")
    url = snowflake_url.replace(f":{FakesnowServer.password}@", "@")
    with (
        create_plugin(
            url, private_key_path=str(key), private_key_passphrase="phrase-Hidden-9", **proxied_endpoint
        ) as plugin,
        plugin.execute("SELECT 41 + 1") as result,
    ):
        assert result.fetchall() == [(42,)]
    login = snowflake_proxy.wait_for(lambda x: x.path == LOGIN_REQUEST)
    data = login.json["data"]
    assert data["AUTHENTICATOR"] == "SNOWFLAKE_JWT"
    assert data["TOKEN"].count(".") == 2  # a JWT signed with the key
    assert "PASSWORD" not in data
    for exchange in snowflake_proxy.exchanges:
        assert "phrase-Hidden-9" not in exchange.text
        assert "PRIVATE KEY" not in exchange.text


# -- Arrow ----------------------------------------------------------------------------------------


def test_arrow_comes_from_the_connector(plugin: Any) -> None:
    sql = (
        "SELECT seq4() AS n, 'x' || seq4() AS label, CURRENT_DATE() AS day "
        "FROM TABLE(GENERATOR(ROWCOUNT => 30000))"
    )
    with plugin.execute(sql) as result:
        reader = result.arrow_batches(10_000)
        first = reader.read_next_batch()
        rest = reader.read_all()
    # Snowflake's own type information, as only the connector's Arrow result carries it
    assert first.schema.field("n").metadata[b"logicalType"] == b"FIXED"
    assert first.schema.field("day").metadata[b"logicalType"] == b"DATE"
    assert str(first.schema.field("day").type) == "date32[day]"
    assert first.schema.names == ["n", "label", "day"]  # the same names as result.columns
    assert first.num_rows + rest.num_rows == 30_000
    with plugin.execute(sql) as result:
        assert result.columns == ["n", "label", "day"]


def test_arrow_of_an_empty_result_and_of_dml(plugin: Any) -> None:
    plugin.execute("CREATE TABLE empty_t (id INTEGER, name VARCHAR)").close()
    with plugin.execute("SELECT * FROM empty_t") as result:
        table = result.to_arrow()
    assert table.num_rows == 0
    with plugin.execute("INSERT INTO empty_t VALUES (1, 'a'), (2, 'b')") as result:
        assert result.to_arrow().num_rows in (0, 1)  # a row count, when the engine reports one


# -- SQLAlchemy tooling ---------------------------------------------------------------------------


def test_inspect_autoload_and_pandas(plugin: Any, snowflake_database: str) -> None:
    plugin.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL)").close()
    plugin.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id), "
        "amount NUMBER(10, 2))"
    ).close()
    plugin.execute("INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace')").close()
    plugin.execute("INSERT INTO orders VALUES (10, 1, 12.50), (11, 2, 3.25)").close()

    inspector = sa.inspect(plugin.engine)
    assert "tests" in inspector.get_schema_names()
    assert set(inspector.get_table_names()) >= {"customers", "orders"}
    columns = inspector.get_columns("orders")
    assert [c["name"] for c in columns] == ["id", "customer_id", "amount"]
    assert isinstance(columns[2]["type"], sa.Numeric) and columns[2]["type"].scale == 2
    assert inspector.get_pk_constraint("orders")["constrained_columns"] == ["id"]
    # fakesnow answers SHOW IMPORTED KEYS with a key to a table without a name: not reported
    assert all(fk["referred_table"] for fk in inspector.get_foreign_keys("orders"))

    metadata = sa.MetaData()
    orders = sa.Table("orders", metadata, autoload_with=plugin.engine)  # resolve_fks=True, the default
    assert orders.c.keys() == ["id", "customer_id", "amount"]
    query = sa.select(orders.c.id).where(orders.c.amount > 5)
    with plugin.execute(query) as result:
        assert result.fetchall() == [(10,)]

    frame = pd.read_sql("SELECT id, name FROM customers ORDER BY id", plugin.engine)
    assert list(frame.columns) == ["id", "name"]
    assert frame["name"].tolist() == ["Ada", "Grace"]
    assert plugin.pool_stats().in_use == 0


def test_settings_go_with_the_login_not_alter_session(
    snowflake_url: str, snowflake_proxy: RecordingProxy, proxied_endpoint: dict[str, Any]
) -> None:
    with create_plugin(snowflake_url, settings={"WEEK_START": 1}, **proxied_endpoint) as plugin:
        login = snowflake_proxy.wait_for(lambda x: x.path == LOGIN_REQUEST)
        assert login.json["data"]["SESSION_PARAMETERS"]["WEEK_START"] == 1
        snowflake_proxy.clear()
        for _ in range(3):
            plugin.execute("SELECT 1", timeout=30, tags={"team": "growth"}).close()
    sent = [x.json["sqlText"] for x in snowflake_proxy.exchanges if x.path == QUERY_REQUEST]
    assert sent.count("SELECT 1") == 3
    assert not [sql for sql in sent if "ALTER SESSION" in sql.upper()]
