"""Snowflake answering 429/503 to a query-request: the connector sends the same request again (same
request id, which Snowflake runs once) with a growing pause, for as long as the query's deadline
allows and no longer."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy
from fixtures.snowflake import query_request

from floe_compute import QueryTimeoutError, create_plugin

pytest_plugins = ["snowflake_fixtures"]
pytestmark = [pytest.mark.snowflake]


@pytest.fixture
def plugin(snowflake_url: str, proxied_endpoint: dict[str, Any]) -> Any:
    with create_plugin(snowflake_url, pool={"size": 1, "max_overflow": 0}, **proxied_endpoint) as plugin:
        yield plugin


@pytest.mark.timeout(60)
@pytest.mark.parametrize("status", [429, 503])
def test_a_query_answered_busy_until_its_deadline_ends_at_its_deadline(
    plugin: Any, snowflake_proxy: RecordingProxy, status: int
) -> None:
    snowflake_proxy.inject(query_request("SELECT 2 AS busy"), status=status, body=b"busy")
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        plugin.execute("SELECT 2 AS busy", timeout=3, query_id="busy").fetchall()
    took = time.monotonic() - started
    assert took < 3 + 2, f"ended {took:.1f} s after its start; its deadline was 3 s"
    sent = [x for x in snowflake_proxy.exchanges if x.injected]
    assert len(sent) >= 2, "the connector did not send the query-request again"
    assert len({x.query["requestId"][0] for x in sent}) == 1, "a re-sent query-request had a new request id"
    assert plugin.pool_stats().in_use == 0
    with plugin.execute("SELECT 3") as result:  # the pooled session is still good
        assert result.fetchall() == [(3,)]
