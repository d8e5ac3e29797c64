"""What a Snowflake load sends, seen at the recording proxy: its own stage, its files, one COPY
INTO, the stage dropped on every path, and HTTP 500s retried within the load's deadline.

fakesnow loads whatever the stage holds and refuses ``COPY INTO ... FILES = (...)``, so the files a
load copies are pinned down by the requests instead: each ``PUT`` names a file of this load and
this load's stage (the file's bytes then go to the stage's presigned URL, straight to the emulator),
and the one ``COPY INTO`` reads ``@`` that stage, which no other load shares and which holds exactly
those files.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fixtures.recording_proxy import Exchange, RecordingProxy
from fixtures.snowflake import ABORT_REQUEST, QUERY_REQUEST, LongQueries, query_request

from floe_compute import QueryCancelledError, QueryError, QueryTimeoutError, create_plugin
from floe_compute.engines import _snowflake_load

pytest_plugins = ["snowflake_fixtures"]
pytestmark = [pytest.mark.snowflake, pytest.mark.timeout(90)]

STAGE = re.compile(r"CREATE TEMPORARY STAGE (FLOE_LOAD_[0-9A-F]{32})$")
PUT = re.compile(r"PUT 'file://(/\S+/(part-\d{5}\.parquet))' @(\S+) ")
GRACE_S = 2.0
"""How long after its deadline a failing load may take to return (one request, the cleanup)."""


@pytest.fixture
def plugin(snowflake_url: str, proxied_endpoint: dict[str, Any]) -> Iterator[Any]:
    with create_plugin(snowflake_url, pool={"size": 1, "max_overflow": 0}, **proxied_endpoint) as plugin:
        yield plugin


@pytest.fixture
def small_files(monkeypatch: pytest.MonkeyPatch) -> int:
    """Two rows per staged file, so that a small load stages several."""
    monkeypatch.setattr(_snowflake_load, "FILE_ROWS", 2)
    return 2


def data(rows: int) -> pa.Table:
    return pa.table({"id": pa.array(range(rows), pa.int64()), "name": [f"n{i}" for i in range(rows)]})


def statements(proxy: RecordingProxy) -> list[Exchange]:
    return [x for x in proxy.exchanges if x.path == QUERY_REQUEST]


def sql(exchange: Exchange) -> str:
    return str(exchange.json["sqlText"])


def stage_of(proxy: RecordingProxy) -> str:
    [created] = [m.group(1) for x in statements(proxy) if (m := STAGE.match(sql(x)))]
    return created


def dropped(proxy: RecordingProxy, stage: str) -> Exchange:
    """The DROP of the stage, sent and answered (fakesnow cannot parse ``DROP STAGE`` and answers a
    syntax error, which the load ignores: the request is what is checked)."""
    return proxy.wait_for(query_request(f"DROP STAGE IF EXISTS {stage}"), answered=True, timeout=10)


def count(plugin: Any, table: str) -> int:
    with plugin.execute(f"SELECT COUNT(*) FROM {table}") as result:
        return int(result.scalar())


def test_a_load_puts_its_own_files_to_its_own_stage_and_copies_that_stage_once(
    plugin: Any, snowflake_proxy: RecordingProxy, small_files: int
) -> None:
    snowflake_proxy.clear()
    result = plugin.load_arrow("staged", data(5), mode="create", batch_size=2)
    assert result.rows == 5
    stage = stage_of(snowflake_proxy)
    sent = statements(snowflake_proxy)
    puts = [(x, m) for x in sent if (m := PUT.match(sql(x)))]
    assert [m.group(2) for _, m in puts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert {m.group(3) for _, m in puts} == {stage}
    assert len({Path(m.group(1)).parent for _, m in puts}) == 1  # one directory of the load's own
    assert not Path(puts[0][1].group(1)).parent.exists()  # removed with its files
    for put, match in puts:  # the emulator stages each file under this load's stage
        assert put.response_json["data"]["stageInfo"]["presignedUrl"].endswith(f"/{stage}/{match.group(2)}")

    [copy] = [x for x in sent if sql(x).startswith("COPY INTO")]
    assert f"FROM @{stage} " in sql(copy)
    assert "ON_ERROR = ABORT_STATEMENT" in sql(copy)
    assert "FILES" not in sql(copy)  # the emulator refuses it: the stage holds exactly these files
    drop = dropped(snowflake_proxy, stage)
    assert drop.status == 200
    order = [sent.index(x) for x in (puts[-1][0], copy, drop)]
    assert order == sorted(order)
    assert count(plugin, "staged") == 5

    snowflake_proxy.clear()
    plugin.load_arrow("staged", data(1))
    assert stage_of(snowflake_proxy) != stage  # each load has a stage of its own


def test_a_load_whose_data_fails_midway_drops_its_stage(
    plugin: Any, snowflake_proxy: RecordingProxy, small_files: int
) -> None:
    def batches() -> Iterator[pa.RecordBatch]:
        yield from data(4).to_batches(max_chunksize=2)
        raise RuntimeError("the source broke")

    snowflake_proxy.clear()
    with pytest.raises(QueryError, match="the source broke"):
        plugin.load_arrow("broken", batches(), mode="create")
    stage = stage_of(snowflake_proxy)
    assert len([x for x in statements(snowflake_proxy) if sql(x).startswith("PUT")]) >= 1
    assert not [x for x in statements(snowflake_proxy) if sql(x).startswith("COPY INTO")]
    assert dropped(snowflake_proxy, stage).status == 200


@pytest.mark.parametrize("stop", ["timeout", "cancel_query"])
def test_a_stopped_load_drops_its_stage(plugin: Any, snowflake_proxy: RecordingProxy, stop: str) -> None:
    plugin.execute("CREATE TABLE held (id NUMBER(38, 0), name VARCHAR)").close()
    long_copy = LongQueries(snowflake_proxy, marker="COPY INTO")  # held until its abort-request
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            timeout = 1.0 if stop == "timeout" else None
            plugin.load_arrow("held", data(3), timeout=timeout, query_id="job-load")
        except BaseException as exc:
            outcome["error"] = exc

    snowflake_proxy.clear()
    thread = threading.Thread(target=run)
    thread.start()
    try:
        snowflake_proxy.wait_for(query_request("COPY INTO"), timeout=30)
        if stop == "cancel_query":
            assert plugin.cancel_query("job-load") is True
        thread.join(30)
    finally:
        long_copy.stop()
    expected = QueryTimeoutError if stop == "timeout" else QueryCancelledError
    assert isinstance(outcome.get("error"), expected), outcome
    assert snowflake_proxy.wait_for(lambda x: x.path == ABORT_REQUEST).status == 200
    assert dropped(snowflake_proxy, stage_of(snowflake_proxy)).status == 200
    assert count(plugin, "held") == 0


def test_http_500_on_every_copy_fails_the_load_at_its_deadline(
    plugin: Any, snowflake_proxy: RecordingProxy
) -> None:
    plugin.execute("CREATE TABLE flaky (id NUMBER(38, 0), name VARCHAR)").close()
    snowflake_proxy.inject(query_request("COPY INTO"), status=500, body="internal error")
    snowflake_proxy.clear()
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        plugin.load_arrow("flaky", data(3), timeout=3.0)
    took = time.monotonic() - started
    assert took < 3.0 + GRACE_S, f"the load returned {took - 3.0:.1f} s after its deadline"
    copies = [x for x in statements(snowflake_proxy) if sql(x).startswith("COPY INTO")]
    assert len(copies) >= 2, "the 500 was not retried"
    assert len({x.query["requestId"][0] for x in copies}) == 1  # the same request, sent again
    assert dropped(snowflake_proxy, stage_of(snowflake_proxy)).status == 200
    snowflake_proxy.clear(rules=True)
    assert count(plugin, "flaky") == 0
    assert plugin.pool_stats().in_use == 0


def test_one_http_500_on_a_put_is_retried_and_the_load_succeeds(
    plugin: Any, snowflake_proxy: RecordingProxy
) -> None:
    plugin.execute("CREATE TABLE retried (id NUMBER(38, 0), name VARCHAR)").close()
    snowflake_proxy.inject(query_request("PUT 'file:///"), status=500, body="internal error", times=1)
    snowflake_proxy.clear()
    started = time.monotonic()
    result = plugin.load_arrow("retried", data(3), timeout=10.0)
    assert time.monotonic() - started < 10.0
    assert result.rows == 3
    puts = [x for x in statements(snowflake_proxy) if sql(x).startswith("PUT 'file:///")]
    assert [x.status for x in puts] == [500, 200]
    assert puts[0].query["requestId"] == puts[1].query["requestId"]
    assert dropped(snowflake_proxy, stage_of(snowflake_proxy)).status == 200
    assert count(plugin, "retried") == 3
