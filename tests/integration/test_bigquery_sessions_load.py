"""BigQuery sessions, "never ran" retries and loads: the requests, checked at the recording proxy
(REST) and in the emulator's own record of its write streams (the Storage Write API is gRPC, which
the proxy does not see: ``GET /admin/streams`` lists each stream with its state).

The emulator mints and checks session ids but keeps nothing per session (no temp table, no session
variable), so what proves a session here is the request shape: ``createSession`` on the block's
first job, the answered ``sessionInfo.sessionId`` as the ``session_id`` connection property on every
later job, the transaction's statements and ``CALL BQ.ABORT_SESSION()`` in it at the end.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from bigquery_support import bigquery_tests, bq_error, job_inserts
from fixtures.bigquery import BigQueryEmulator
from fixtures.recording_proxy import RecordingProxy

from floe_compute import QueryError, ResourceLimitError, create_plugin

pytest_plugins = ["bigquery_fixtures"]
pytestmark = bigquery_tests


class _Boom(Exception):
    pass


def _query(insert: Any) -> dict[str, Any]:
    query: dict[str, Any] = insert.json["configuration"]["query"]
    return query


def _session_of(insert: Any) -> str | None:
    properties = _query(insert).get("connectionProperties") or []
    return next((p["value"] for p in properties if p["key"] == "session_id"), None)


# -- sessions -----------------------------------------------------------------------------------


@pytest.fixture
def private(bq_private_dataset: tuple[str, str]) -> Iterator[tuple[str, RecordingProxy]]:
    """A dataset on an emulator of the module's own and a proxy to it: these tests roll back."""
    url, emulator_url = bq_private_dataset
    with RecordingProxy(emulator_url) as proxy:
        yield url, proxy


def test_a_sessions_jobs_share_one_bigquery_session_ended_by_an_abort(private: Any) -> None:
    bq_url, bq_proxy = private
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        bq.execute("CREATE TABLE session_t (i INT64)").close()
        bq_proxy.clear()
        with bq.session() as s:
            s.execute("SELECT 1 AS first").close()
            with s.transaction():
                s.execute("INSERT INTO session_t VALUES (1)").close()
            with pytest.raises(_Boom), s.transaction():
                s.execute("INSERT INTO session_t VALUES (2)").close()
                raise _Boom
        bq.execute("SELECT 2 AS outside").close()
    first, *rest = job_inserts(bq_proxy)
    assert _query(first)["query"] == "SELECT 1 AS first" and _query(first)["createSession"] is True
    session_id = first.response_json["statistics"]["sessionInfo"]["sessionId"]
    in_session = [(_query(x)["query"], _session_of(x), "createSession" in _query(x)) for x in rest]
    assert in_session == [
        ("BEGIN TRANSACTION", session_id, False),
        ("INSERT INTO session_t VALUES (1)", session_id, False),
        ("COMMIT TRANSACTION", session_id, False),
        ("BEGIN TRANSACTION", session_id, False),
        ("INSERT INTO session_t VALUES (2)", session_id, False),
        ("ROLLBACK TRANSACTION", session_id, False),
        ("CALL BQ.ABORT_SESSION()", session_id, False),  # the emulator has no such routine: ignored
        ("SELECT 2 AS outside", None, False),  # after the block: no session
    ]


def test_a_transaction_first_in_the_block_starts_the_session(private: Any) -> None:
    bq_url, bq_proxy = private
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq, bq.session() as s, s.transaction():
        s.execute("SELECT 1").close()
    begin, select, commit, abort = job_inserts(bq_proxy)
    assert _query(begin)["query"] == "BEGIN TRANSACTION" and _query(begin)["createSession"] is True
    session_id = begin.response_json["statistics"]["sessionInfo"]["sessionId"]
    assert [_session_of(x) for x in (select, commit, abort)] == [session_id] * 3


# -- a job that never ran --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded"), (500, "INTERNAL", "backendError")],
)
def test_a_read_refused_at_jobs_insert_runs_again_as_a_new_job(
    bq_url: str, bq_proxy: RecordingProxy, code: int, status: str, reason: str
) -> None:
    def insert_of_marker(x: Any) -> bool:
        return x.method == "POST" and x.path.endswith("/jobs") and "floe_refused" in x.text

    bq_proxy.inject(insert_of_marker, status=code, body=bq_error(code, status, reason), times=1)
    with (
        create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq,
        bq.execute("SELECT 7 AS floe_refused", query_id="refused-read") as result,
    ):
        assert result.fetchall() == [(7,)]
    refused, ran = [x for x in job_inserts(bq_proxy) if "floe_refused" in x.text]
    assert refused.injected and refused.status == code and ran.status == 200
    first, second = (x.json["jobReference"]["jobId"] for x in (refused, ran))
    assert first != second and first.startswith("refused-read_") and second.startswith("refused-read_")


def test_a_write_refused_at_jobs_insert_is_not_run_again(bq_url: str, bq_proxy: RecordingProxy) -> None:
    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        bq.execute("CREATE TABLE refused_w (i INT64)").close()
        body = bq_error(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded")
        bq_proxy.inject(lambda x: x.method == "POST" and "refused_w VALUES" in x.text, status=429, body=body)
        with pytest.raises(ResourceLimitError, match="rateLimitExceeded"):
            bq.execute("INSERT INTO refused_w VALUES (1)").close()
    assert len([x for x in job_inserts(bq_proxy) if "refused_w VALUES" in x.text]) == 1


# -- loads -------------------------------------------------------------------------------------------


def _streams(emulator: BigQueryEmulator, table: str) -> list[dict[str, Any]]:
    """The emulator's write streams into ``table`` (its admin endpoint)."""
    with urllib.request.urlopen(f"{emulator.url}/admin/streams", timeout=30) as answer:
        streams: list[dict[str, Any]] = json.load(answer)["writeStreams"]
    return [s for s in streams if s["tableId"] == table]


@pytest.fixture
def loader(bq_url: str, bq_proxy: RecordingProxy, bq_storage: str) -> Iterator[Any]:
    with create_plugin(bq_url, api_endpoint=bq_proxy.url, storage_endpoint=bq_storage) as bq:
        yield bq


def test_a_load_is_one_pending_stream_committed_once(loader: Any, bq_emulator: BigQueryEmulator) -> None:
    import pyarrow as pa

    data = pa.table({"id": pa.array(range(25_000), pa.int64())})
    assert loader.load_arrow("stream_once", data.to_batches(max_chunksize=1000), mode="create").rows == 25_000
    [stream] = _streams(bq_emulator, "stream_once")
    assert (stream["streamType"], stream["state"], stream["rowCount"]) == ("PENDING", "COMMITTED", 25_000)


def test_a_failed_load_never_commits_its_stream(loader: Any, bq_emulator: BigQueryEmulator) -> None:
    import pyarrow as pa

    loader.execute("CREATE TABLE stream_failed (id INT64)").close()

    def source() -> Iterator[Any]:
        yield pa.record_batch({"id": pa.array(range(1000), pa.int64())})
        raise _Boom

    with pytest.raises(QueryError, match="_Boom"):
        loader.load_arrow("stream_failed", source())
    [stream] = _streams(bq_emulator, "stream_failed")
    assert stream["state"] != "COMMITTED" and stream["rowCount"] == 1000  # sent, never committed
    with loader.execute("SELECT count(*) FROM stream_failed") as result:
        assert result.fetchall() == [(0,)]


def test_without_a_storage_endpoint_a_load_is_one_parquet_load_job(
    bq_url: str, bq_proxy: RecordingProxy
) -> None:
    import pyarrow as pa

    with create_plugin(bq_url, api_endpoint=bq_proxy.url) as bq:
        bq.execute("CREATE TABLE by_job (id INT64, label STRING)").close()
        data = pa.table({"label": ["a", None], "id": [1, 2]})
        assert bq.load_arrow("by_job", data, query_id="load-job").rows == 2
        with bq.execute("SELECT id, label FROM by_job ORDER BY id") as result:
            assert result.fetchall() == [(1, "a"), (2, None)]
        bad = pa.table({"id": ["3", "not-a-number"], "label": ["c", "d"]})
        with pytest.raises(QueryError, match="column id"):
            bq.load_arrow("by_job", bad)
    [upload] = [x for x in bq_proxy.exchanges if x.method == "POST" and "/upload/" in x.path]  # one job
    configuration = upload.json  # a resumable upload: the job first, then its file
    load = configuration["configuration"]["load"]
    assert (load["sourceFormat"], load["writeDisposition"]) == ("PARQUET", "WRITE_APPEND")
    assert configuration["jobReference"]["jobId"].startswith("load-job_")


def test_a_failed_replace_leaves_the_table_as_it_was(loader: Any) -> None:
    import pyarrow as pa

    loader.load_arrow("replaced", pa.table({"id": [1, 2, 3]}), mode="create")

    def source() -> Iterator[Any]:
        yield pa.record_batch({"id": pa.array([9], pa.int64()), "note": pa.array(["x"])})
        raise _Boom

    with pytest.raises(QueryError, match="_Boom"):
        loader.load_arrow("replaced", source(), mode="replace")
    with loader.execute("SELECT id FROM replaced ORDER BY id") as result:
        assert result.fetchall() == [(1,), (2,), (3,)]
    assert loader.load_arrow("replaced", pa.table({"id": [7], "note": ["y"]}), mode="replace").rows == 1
    with loader.execute("SELECT id, note FROM replaced") as result:
        assert result.fetchall() == [(7, "y")]
    import sqlalchemy as sa

    assert sa.inspect(loader.engine).get_table_names() == ["replaced"]  # no staging table left
