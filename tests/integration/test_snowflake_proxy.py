"""What the plugin sends Snowflake for timeouts, tags and cancellation, seen at the recording proxy.

The emulator ignores statement parameters and cancellation, so these tests check the requests
themselves, as Snowflake's REST API documents them: the query-request's ``parameters``
(``STATEMENT_TIMEOUT_IN_SECONDS``, ``QUERY_TAG``) and ``requestId``, and the ``abort-request`` that
names that request id. A long query is played by the proxy (``LongQueries``): held until its
abort-request arrives, then answered ``000604`` as Snowflake does.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy
from fixtures.snowflake import (
    ABORT_REQUEST,
    LOGIN_REQUEST,
    QUERY_REQUEST,
    LongQueries,
    query_request,
    request_id,
)

from floe_compute import QueryCancelledError, QueryTimeoutError, create_plugin

pytest_plugins = ["snowflake_fixtures"]
pytestmark = [pytest.mark.snowflake]

LONG = "SELECT SYSTEM$WAIT(600)"


@pytest.fixture
def plugin(snowflake_url: str, proxied_endpoint: dict[str, Any]) -> Any:
    with create_plugin(snowflake_url, pool={"size": 1, "max_overflow": 0}, **proxied_endpoint) as plugin:
        yield plugin


def parameters(exchange: Any) -> dict[str, Any]:
    return dict(exchange.json.get("parameters") or {})


def test_timeout_and_tags_travel_with_each_query(plugin: Any, snowflake_proxy: RecordingProxy) -> None:
    snowflake_proxy.clear()
    tags = {"dag": "nightly", "team": "growth"}
    with plugin.execute("SELECT 1 AS tagged", timeout=2.5, tags=tags, query_id="job-42") as result:
        assert result.fetchall() == [(1,)]
    sent = snowflake_proxy.wait_for(query_request("SELECT 1 AS tagged"))
    params = parameters(sent)
    assert params["STATEMENT_TIMEOUT_IN_SECONDS"] == 3  # whole seconds, rounded up
    assert json.loads(params["QUERY_TAG"]) == {"dag": "nightly", "team": "growth", "query_id": "job-42"}

    # the next query on the same pooled session carries its own values: nothing leaked
    with plugin.execute("SELECT 2 AS untagged") as result:
        assert result.fetchall() == [(2,)]
    untagged = parameters(snowflake_proxy.wait_for(query_request("SELECT 2 AS untagged")))
    assert "STATEMENT_TIMEOUT_IN_SECONDS" not in untagged
    assert json.loads(untagged["QUERY_TAG"]).keys() == {"query_id"}
    assert plugin.pool_stats().connects == 1

    statements = [x.json["sqlText"] for x in snowflake_proxy.exchanges if x.path == QUERY_REQUEST]
    assert not [s for s in statements if "ALTER SESSION" in s.upper()]


def test_timeout_sends_abort_request_for_the_running_query(
    plugin: Any, snowflake_proxy: RecordingProxy, long_queries: LongQueries, caplog: pytest.LogCaptureFixture
) -> None:
    snowflake_proxy.clear()
    with caplog.at_level("WARNING", logger="floe_compute"), pytest.raises(QueryTimeoutError) as caught:
        plugin.execute(LONG, timeout=0.5, query_id="job-late", tags={"dag": "nightly"}).fetchall()
    error = caught.value
    assert error.query_id == "job-late"
    assert error.timeout == 0.5
    [logged] = [r for r in caplog.records if "timed out" in r.getMessage()]
    assert logged.floe["cancelled_on_engine"] is True  # type: ignore[attr-defined]

    query = snowflake_proxy.wait_for(query_request(LONG))
    assert parameters(query)["STATEMENT_TIMEOUT_IN_SECONDS"] == 1  # the server's own backstop
    abort = snowflake_proxy.wait_for(lambda x: x.path == ABORT_REQUEST)
    assert abort.json["requestId"] == request_id(query)  # names exactly the running query
    assert abort.json["sqlText"] == LONG
    assert abort.status == 200
    # sent while the query's own request was still open: the watchdog did not wait for it
    assert query.finished is not None and abort.started < query.finished
    assert len([x for x in snowflake_proxy.exchanges if x.path == ABORT_REQUEST]) == 1

    # the only connection is back in the pool, still the same session, and works
    assert plugin.pool_stats().in_use == 0
    with plugin.execute("SELECT 3", timeout=30) as result:
        assert result.fetchall() == [(3,)]
    stats = plugin.pool_stats()
    assert (stats.connects, stats.invalidations) == (1, 0)


def test_cancel_query_from_another_thread_while_execute_is_blocked(
    plugin: Any, snowflake_proxy: RecordingProxy, long_queries: LongQueries
) -> None:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            plugin.execute(LONG, query_id="job-stop").fetchall()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    query = snowflake_proxy.wait_for(query_request(LONG), timeout=30)  # running on "Snowflake"
    assert plugin.cancel_query("job-stop") is True
    thread.join(30)
    assert isinstance(outcome.get("error"), QueryCancelledError), outcome
    abort = snowflake_proxy.wait_for(lambda x: x.path == ABORT_REQUEST)
    assert abort.json["requestId"] == request_id(query)
    assert plugin.pool_stats().in_use == 0
    assert plugin.running_queries() == []


def test_a_failed_abort_discards_the_session(
    plugin: Any, snowflake_proxy: RecordingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    snowflake_proxy.delay(query_request("SELECT 7 AS late"), until=release)
    snowflake_proxy.inject(lambda x: x.path == ABORT_REQUEST, status=503, body=b"unavailable")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            plugin.execute("SELECT 7 AS late", timeout=0.5).fetchall()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    with caplog.at_level("WARNING", logger="floe_compute"):
        thread.start()
        snowflake_proxy.wait_for(lambda x: x.path == ABORT_REQUEST, answered=True, timeout=30)
        release.set()  # the query ends by itself; nobody could stop it
        thread.join(30)
    error = outcome.get("error")
    assert isinstance(error, QueryTimeoutError), outcome
    [logged] = [r for r in caplog.records if "timed out" in r.getMessage()]
    assert logged.floe["cancelled_on_engine"] is False  # type: ignore[attr-defined]
    # the session that may still run it is not handed to anyone else
    stats = plugin.pool_stats()
    assert stats.in_use == 0
    assert stats.invalidations == 1
    logins = len([x for x in snowflake_proxy.exchanges if x.path == LOGIN_REQUEST])
    with plugin.execute("SELECT 8", timeout=30) as result:
        assert result.fetchall() == [(8,)]
    assert len([x for x in snowflake_proxy.exchanges if x.path == LOGIN_REQUEST]) == logins + 1


def test_snowflake_statement_timeout_is_a_query_timeout(plugin: Any, snowflake_proxy: RecordingProxy) -> None:
    # the warehouse's own STATEMENT_TIMEOUT_IN_SECONDS ended the query (Snowflake's payload)
    snowflake_proxy.inject(
        query_request("SELECT 9 AS slow"),
        status=200,
        body={
            "data": {
                "errorCode": "000630",
                "sqlState": "57014",
                "queryId": "01b8a1c2-0000-4a2b-0000-0001aa0f5e30",
            },
            "code": "000630",
            "message": "Statement reached its statement or warehouse timeout of 3,600 second(s) and was "
            "canceled.",
            "success": False,
            "headers": None,
        },
    )
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="the engine's statement timeout"):
        plugin.execute("SELECT 9 AS slow")
    assert time.monotonic() - started < 30
    assert plugin.pool_stats().in_use == 0
