"""BigQuery on the emulator, and the requests the plugin sends, checked at the recording proxy.

The emulator ignores ``job_timeout_ms``, labels, ``maximum_bytes_billed`` and ``jobs.cancel``, and
answers ``jobs.insert`` only when the query is done. So the tests here look at the requests
themselves (as the BigQuery REST API documents them), hold answers to let a deadline pass while a job
"runs", and answer with the error payloads the real service documents.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from bigquery_support import PROJECT, bigquery_tests, bq_error, is_insert_of, job_inserts, service_account_key
from fixtures.recording_proxy import RecordingProxy

from floe_compute import (
    ConfigError,
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
    create_plugin,
)
from floe_compute.testing.threads import run_in_thread

pytest_plugins = ["bigquery_fixtures"]
pytestmark = bigquery_tests

HANG_S = 5.0
"""How long after its deadline or cancel a query may take to end here before the test calls it a
hang. Not a speed target: ``make bench`` measures how soon (benchmarks/bigquery_bench.py)."""


@pytest.fixture
def gate() -> Any:
    """Releases everything the proxy holds when the test ends."""
    event = threading.Event()
    yield event
    event.set()


# -- the job request -------------------------------------------------------------------------


def test_job_request_carries_deadline_byte_limit_labels_and_our_job_id(
    bq_url: str, bq_proxy: RecordingProxy
) -> None:
    tags = {"Team": "Growth", "dag.run": "Nightly Run #7", "owner": "x" * 80}
    with (
        create_plugin(
            bq_url, api_endpoint=bq_proxy.url, limits={"maximum_bytes_billed": "10GB"}, priority="batch"
        ) as bq,
        bq.execute("SELECT 1 AS one", timeout=12.5, query_id="nightly.orders:1", tags=tags) as result,
    ):
        assert result.fetchall() == [(1,)]
    [insert] = job_inserts(bq_proxy)
    job = insert.json
    assert job["configuration"]["jobTimeoutMs"] == "12500"
    query = job["configuration"]["query"]
    assert query["maximumBytesBilled"] == str(10 * 1000**3)
    assert query["priority"] == "BATCH"
    assert query["defaultDataset"]["datasetId"] == bq_url.rsplit("/", 1)[1]
    assert job["configuration"]["labels"] == {
        "team": "growth",
        "dag_run": "nightly_run_7",
        "owner": "x" * 63,
        "floe_query_id": "nightly_orders_1",
    }
    assert job["jobReference"]["jobId"].startswith("nightly_orders_1_")
    # every later request of the query is about that job
    assert all(job["jobReference"]["jobId"] in x.path for x in bq_proxy.exchanges[1:])


def test_no_deadline_and_no_limit_send_none(bq_url: str, bq_proxy: RecordingProxy) -> None:
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq, bq.execute("SELECT 1 AS one") as result:
        result.fetchall()
    [insert] = job_inserts(bq_proxy)
    configuration = insert.json["configuration"]
    assert "jobTimeoutMs" not in configuration
    assert "maximumBytesBilled" not in configuration["query"]
    assert configuration["query"]["priority"] == "INTERACTIVE"
    assert set(configuration["labels"]) == {"floe_query_id"}


def test_timeout_ends_a_running_job_and_cancels_it(
    bq_url: str, bq_proxy: RecordingProxy, gate: threading.Event
) -> None:
    bq_proxy.delay(is_insert_of("held_job"), until=gate, forward_first=True)
    with create_plugin(bq_url, api_endpoint=bq_proxy.url, pool={"size": 1, "max_overflow": 0}) as bq:
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError) as caught:
            bq.execute("SELECT 1 AS held_job", timeout=0.5, query_id="held-1")
        ended = time.monotonic()
        assert 0.5 <= ended - started < 0.5 + HANG_S
        assert caught.value.query_id == "held-1"
        job_id = job_inserts(bq_proxy)[0].json["jobReference"]["jobId"]
        cancel = bq_proxy.wait_for(lambda x: x.method == "POST" and x.path.endswith("/cancel"))
        assert cancel.path == f"/bigquery/v2/projects/{PROJECT}/jobs/{job_id}/cancel"
        # the only connection is free and works while the old answer is still held
        assert bq.pool_stats().in_use == 0
        with bq.execute("SELECT 2 AS two", timeout=30) as result:
            assert result.fetchall() == [(2,)]


def test_cancel_query_stops_a_blocked_execute_and_cancels_the_job(
    bq_url: str, bq_proxy: RecordingProxy, gate: threading.Event
) -> None:
    bq_proxy.delay(is_insert_of("held_job"), until=gate, forward_first=True)
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        outcome = run_in_thread(lambda: bq.execute("SELECT 1 AS held_job", query_id="stop-me"))
        insert = bq_proxy.wait_for(is_insert_of("held_job"), timeout=30)
        cancelled = time.monotonic()
        assert bq.cancel_query("stop-me") is True
        outcome.join()
        assert isinstance(outcome.error, QueryCancelledError), outcome
        assert outcome.ended is not None and outcome.ended - cancelled < HANG_S
        job_id = insert.json["jobReference"]["jobId"]
        bq_proxy.wait_for(lambda x: x.path.endswith(f"/jobs/{job_id}/cancel"))
        assert bq.running_queries() == []


def test_a_failed_job_cancel_is_sent_again(
    bq_url: str, bq_proxy: RecordingProxy, gate: threading.Event
) -> None:
    """The caller is woken at once, so nobody else would ask again: the plugin retries itself."""
    bq_proxy.delay(is_insert_of("held_job"), until=gate, forward_first=True)
    unavailable = bq_error(503, "UNAVAILABLE", "backendError", "try again")
    bq_proxy.inject(lambda x: x.path.endswith("/cancel"), status=503, body=unavailable, times=1)
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        outcome = run_in_thread(lambda: bq.execute("SELECT 1 AS held_job", query_id="stop-me"))
        insert = bq_proxy.wait_for(is_insert_of("held_job"), timeout=30)
        assert bq.cancel_query("stop-me") is True
        assert isinstance(outcome.join().error, QueryCancelledError), outcome
        path = f"/bigquery/v2/projects/{PROJECT}/jobs/{insert.json['jobReference']['jobId']}/cancel"
        deadline = time.monotonic() + 30
        while len(sent := [x for x in bq_proxy.exchanges if x.path == path]) < 2:
            assert time.monotonic() < deadline, f"jobs.cancel sent {len(sent)} time(s), not again"
            time.sleep(0.05)
        assert sent[0].status == 503  # the first failed; the second went out on its own


def test_a_held_page_ends_in_the_deadline(
    bq_url: str, bq_proxy: RecordingProxy, gate: threading.Event
) -> None:
    """The deadline covers fetching: a page that does not come ends the result on time."""
    bq_proxy.delay(lambda x: "pageToken" in x.query, until=gate)
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        result = bq.execute("SELECT i FROM UNNEST(GENERATE_ARRAY(1, 300)) AS i", timeout=5, batch_size=100)
        deadline = time.monotonic() + (5 - result.handle.elapsed)
        assert len(result.fetchmany(100)) == 100
        with pytest.raises(QueryTimeoutError):
            result.fetchall()
        assert time.monotonic() - deadline < HANG_S
        assert bq.pool_stats().in_use == 0


# -- paging ----------------------------------------------------------------------------------


def test_rows_and_arrow_come_one_page_at_a_time(bq_url: str, bq_proxy: RecordingProxy) -> None:
    sql = "SELECT i, CAST(i AS STRING) AS s FROM UNNEST(GENERATE_ARRAY(1, 5000)) AS i ORDER BY i"

    def pages() -> int:
        return len([x for x in bq_proxy.exchanges if x.method == "GET" and "/queries/" in x.path])

    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        with bq.execute(sql, batch_size=1000) as result:
            assert result.fetchone() == (1, "1")
            assert pages() == 1  # the first page only
            first_page = next(x for x in bq_proxy.exchanges if "/queries/" in x.path)
            assert first_page.query["maxResults"] == ["1000"]
            assert len(result.fetchmany(999)) == 999
            assert pages() == 1
            assert result.fetchone() == (1001, "1001")
            assert pages() == 2
        bq_proxy.clear()
        with bq.execute(sql, batch_size=1000) as result:
            reader = result.arrow_batches(400)
            first = reader.read_next_batch()
            assert first.num_rows == 400 and first.schema.names == ["i", "s"]
            assert pages() == 1
            total = first.num_rows + sum(b.num_rows for b in reader)
        assert total == 5000
        assert pages() == 5


# -- errors ------------------------------------------------------------------------------------


def test_over_the_byte_limit_is_a_resource_limit_error(bq_url: str, bq_proxy: RecordingProxy) -> None:
    message = "Query exceeded limit for bytes billed: 1000000. 10485760 or higher required."
    bq_proxy.inject(
        lambda x: x.method == "GET" and "/queries/" in x.path,
        status=400,
        body=bq_error(400, "INVALID_ARGUMENT", "bytesBilledLimitExceeded", message),
    )
    with create_plugin(bq_url, api_endpoint=bq_proxy.url, limits={"maximum_bytes_billed": 1_000_000}) as bq:
        with pytest.raises(ResourceLimitError) as caught:
            bq.execute("SELECT 1 AS one", query_id="costly")
        error = str(caught.value)
        assert "limits.maximum_bytes_billed=1000000 bytes" in error
        assert "bytesBilledLimitExceeded" in error and message in error
        assert caught.value.query_id == "costly"
        assert bq.pool_stats().in_use == 0


@pytest.mark.parametrize(
    ("code", "status", "reason", "message", "expected"),
    [
        (
            403,
            "PERMISSION_DENIED",
            "quotaExceeded",
            "Quota exceeded: Your project exceeded quota for free query bytes scanned.",
            ResourceLimitError,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "accessDenied",
            "Access Denied: Table floe-test:sales.orders: User "
            "does not have permission to query table floe-test:sales.orders.",
            QueryError,
        ),
        (
            404,
            "NOT_FOUND",
            "notFound",
            "Not found: Dataset floe-test:sales was not found in location EU",
            QueryError,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "resourcesExceeded",
            "Resources exceeded during query execution.",
            ResourceLimitError,
        ),
    ],
)
def test_documented_errors_map_to_their_classes(
    bq_url: str,
    bq_proxy: RecordingProxy,
    code: int,
    status: str,
    reason: str,
    message: str,
    expected: type[Exception],
) -> None:
    bq_proxy.inject(
        is_insert_of("FROM sales.orders"), status=code, body=bq_error(code, status, reason, message)
    )
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        with pytest.raises(expected) as caught:
            bq.execute("SELECT * FROM sales.orders")
        assert type(caught.value) is expected
        assert reason in str(caught.value) and message in str(caught.value)


def test_refused_credentials_name_the_project(bq_url: str, bq_proxy: RecordingProxy) -> None:
    """A token that the API refuses (401, after the client refreshed it once)."""
    token = {"access_token": "ya29.expired", "expires_in": 3600, "token_type": "Bearer"}
    bq_proxy.inject(lambda x: x.path == "/token", status=200, body=token)
    message = "Request had invalid authentication credentials."
    body = bq_error(401, "UNAUTHENTICATED", "authError", message)
    bq_proxy.inject(lambda x: x.path.startswith("/bigquery/"), status=401, body=body)
    key = service_account_key(f"{bq_proxy.url}/token")
    given = {"api_endpoint": bq_proxy.url, "credentials_json": json.dumps(key)}
    with create_plugin(bq_url, **given) as bq, pytest.raises(ConnectionFailedError) as caught:
        bq.execute("SELECT 1")
    assert f"BigQuery project {PROJECT}" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize("form", ["credentials_file", "credentials_json"])
def test_a_refused_key_names_the_project_and_never_the_key(
    bq_url: str, bq_proxy: RecordingProxy, tmp_path: Path, form: str
) -> None:
    bq_proxy.inject(
        lambda x: x.path == "/token",
        status=400,
        body={"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
    )
    key = service_account_key(f"{bq_proxy.url}/token")
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    given = (
        {"credentials_file": str(path)}
        if form == "credentials_file"
        else {"credentials_json": json.dumps(key)}
    )
    with create_plugin(bq_url, api_endpoint=bq_proxy.url, **given) as bq:
        assert key["private_key"] not in repr(bq.config)
        with pytest.raises(ConnectionFailedError) as caught:
            bq.execute("SELECT 1")
    error = str(caught.value)
    assert f"BigQuery project {PROJECT}" in error and "invalid_grant" in error
    secret_lines = [line for line in key["private_key"].splitlines() if "PRIVATE KEY" not in line]
    assert not any(line in error for line in secret_lines)
    assert bq_proxy.wait_for(lambda x: x.path == "/token").injected  # the key was really used


def test_an_unreadable_or_malformed_key_is_a_connection_error(tmp_path: Path, bq_url: str) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConnectionFailedError, match=f"project {PROJECT}.*cannot read credentials_file"):
        create_plugin(bq_url, credentials_file=str(missing)).connect()
    secret = "-----BEGIN PRIVATE KEY-----\nAAAAsecretmaterial\n-----END PRIVATE KEY-----\n"
    bad = json.dumps({"type": "service_account", "private_key": secret, "client_email": "a@b"})
    with pytest.raises(
        ConnectionFailedError, match=f"project {PROJECT}.*not a valid service account key"
    ) as caught:
        create_plugin(bq_url, credentials_json=bad).connect()
    assert "secretmaterial" not in str(caught.value)


# -- SQL errors end to end, and SQLAlchemy tooling ---------------------------------------------


def test_sql_errors_are_not_swallowed(bq_url: str, bq_emulator: Any) -> None:
    import pandas as pd

    with create_plugin(bq_url, api_endpoint=bq_emulator.url) as bq:
        with pytest.raises(QueryError, match=r"Syntax error.*invalidQuery"):
            bq.execute("SELEC 1")
        with pytest.raises(QueryError, match=r"no_such_table.*notFound"):
            bq.execute("SELECT * FROM no_such_table")
        with pytest.raises(pd.errors.DatabaseError, match="no_such_table"):  # pandas wraps it
            pd.read_sql("SELECT * FROM no_such_table", bq.engine)


def test_statements_are_read_as_bigquery_sql(bq_url: str, bq_emulator: Any) -> None:
    """A semicolon or a colon inside a backtick-quoted name is part of the name, not a second
    statement or a parameter."""
    with create_plugin(bq_url, api_endpoint=bq_emulator.url) as bq:
        with bq.execute("SELECT 1 AS `a;b`") as result:
            assert (result.columns, result.fetchall()) == (["a;b"], [(1,)])
        with bq.execute("SELECT :n AS `x:y`", {"n": 2}) as result:
            assert result.fetchall() == [(2,)]


def test_sqlalchemy_tooling_on_the_emulator(bq_url: str, bq_emulator: Any) -> None:
    import pandas as pd

    with create_plugin(bq_url, api_endpoint=bq_emulator.url) as bq:
        bq.execute("CREATE TABLE orders (id INT64, customer STRING, amount FLOAT64)").close()
        inspector = sa.inspect(bq.engine)
        assert inspector.get_table_names() == ["orders"]
        assert [(c["name"], c["type"].python_type) for c in inspector.get_columns("orders")] == [
            ("id", int),
            ("customer", str),
            ("amount", float),
        ]
        orders = sa.Table("orders", sa.MetaData(), autoload_with=bq.engine)
        assert [c.name for c in orders.columns] == ["id", "customer", "amount"]
        with bq.engine.begin() as connection:
            connection.execute(
                orders.insert(),
                [{"id": 1, "customer": "ada", "amount": 10.5}, {"id": 2, "customer": "bob", "amount": 3.0}],
            )
        query = sa.select(orders.c.customer, orders.c.amount).where(orders.c.amount > sa.bindparam("low"))
        with bq.execute(query, {"low": 5}) as result:
            assert result.fetchall() == [("ada", 10.5)]
        frame = pd.read_sql(sa.select(orders).order_by(orders.c.id), bq.engine)
        assert frame["customer"].tolist() == ["ada", "bob"]
        frame = pd.read_sql(
            sa.text("SELECT count(*) AS n FROM orders WHERE id >= :i"), bq.engine, params={"i": 2}
        )
        assert frame["n"].tolist() == [1]


def test_a_tag_that_cannot_be_a_label_fails_before_any_job(bq_url: str, bq_proxy: RecordingProxy) -> None:
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        with pytest.raises(ConfigError, match="'1st'"):
            bq.execute("SELECT 1", tags={"1st": "x"})
        assert job_inserts(bq_proxy) == []
        assert bq.pool_stats().in_use == 0


def test_primary_key_is_reflected_from_the_table_resource(bq_url: str, bq_proxy: RecordingProxy) -> None:
    """The emulator keeps no table constraints; the documented table resource carries them."""
    dataset = bq_url.rsplit("/", 1)[1]
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        bq.execute("CREATE TABLE keyed (id INT64 NOT NULL, name STRING)").close()
        assert sa.inspect(bq.engine).get_pk_constraint("keyed")["constrained_columns"] == []
        resource = {
            "kind": "bigquery#table",
            "tableReference": {"projectId": PROJECT, "datasetId": dataset, "tableId": "keyed"},
            "type": "TABLE",
            "schema": {
                "fields": [
                    {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
                    {"name": "name", "type": "STRING", "mode": "NULLABLE"},
                ]
            },
            "tableConstraints": {"primaryKey": {"columns": ["id"]}},
        }
        bq_proxy.inject(
            lambda x: x.method == "GET" and x.path.endswith("/tables/keyed"), status=200, body=resource
        )
        assert sa.inspect(bq.engine).get_pk_constraint("keyed")["constrained_columns"] == ["id"]
