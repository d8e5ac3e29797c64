"""Databricks answering HTTP 429/503 to a statement (before it starts), seen through a recording
proxy in front of the HTTP Thrift endpoint: a read runs again once on a fresh connection; a write
fails at once and is never sent again."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy

from floe_compute import ConnectionFailedError, create_plugin

pytest_plugins = ["databricks_fixtures"]
pytestmark = [pytest.mark.databricks]


@pytest.fixture
def proxy(databricks_server: Any) -> Iterator[RecordingProxy]:
    with RecordingProxy(f"http://{databricks_server.host}:{databricks_server.port}") as proxy:
        yield proxy


@pytest.fixture
def plugin(databricks_server: Any, databricks_url: str, proxy: RecordingProxy) -> Iterator[Any]:
    from databricks_fixtures import databricks_overrides

    endpoint = {"connection_uri": f"{proxy.url}/{databricks_server.http_path}"}
    overrides = databricks_overrides(databricks_server, **endpoint)
    with create_plugin(databricks_url, **overrides) as plugin:
        yield plugin


def statement(text: str) -> Any:
    return lambda x: b"ExecuteStatement" in x.body and text.encode() in x.body


@pytest.mark.parametrize("status", [429, 503])
def test_a_read_answered_busy_runs_again_once(
    plugin: Any, proxy: RecordingProxy, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="floe_compute")
    proxy.inject(statement("AS busy_read"), status=status, body=b"busy", times=1)
    with plugin.execute("SELECT 7 AS busy_read", query_id="busy-read", timeout=60) as result:
        assert result.fetchall() == [(7,)]
    sent = [x for x in proxy.exchanges if statement("AS busy_read")(x)]
    assert [x.injected for x in sent] == [True, False]  # answered busy, then run once
    [line] = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert "busy-read" in line and "429/503" in line
    assert plugin.pool_stats().in_use == 0


def test_a_write_answered_busy_fails_and_is_not_sent_again(plugin: Any, proxy: RecordingProxy) -> None:
    plugin.execute("CREATE TABLE busy_write (id INT)").close()
    proxy.inject(statement("INSERT INTO busy_write"), status=503, body=b"busy", times=1)
    with pytest.raises(ConnectionFailedError):
        plugin.execute("INSERT INTO busy_write VALUES (1)", timeout=60).close()
    assert len([x for x in proxy.exchanges if statement("INSERT INTO busy_write")(x)]) == 1
    with plugin.execute("SELECT count(*) FROM busy_write") as result:
        assert result.fetchall() == [(0,)]
