"""The contract suite on Snowflake: the fakesnow emulator behind the recording proxy.

Every query runs end to end on the emulator (a database of each test's own), except the suite's
long-running statement (``SELECT SYSTEM$WAIT(600)``): the emulator runs statements at once and
ignores cancellation, so the proxy answers that one as Snowflake answers a long query
(``LongQueries``: the query-request is held until an abort-request names its request id, then
answered ``000604 SQL execution canceled``). The timeout and cancel checks therefore prove what the
plugin sends and how it ends the query; that the warehouse then stops is Snowflake's part.

fakesnow sends a whole result in its first response (Snowflake streams large results in chunks),
so the streaming-deadline checks let the deadline pass between two fetches instead of racing it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy
from fixtures.snowflake import QUERY_REQUEST, LongQueries

from floe_compute import ComputePlugin, QueryCancelledError, QueryTimeoutError, create_plugin
from floe_compute.testing import ComputePluginContract
from floe_compute.testing.threads import wait_until_unlisted

pytest_plugins = ["snowflake_fixtures"]
pytestmark = [pytest.mark.snowflake]


def tagged(query_id: str) -> Any:
    """A proxy predicate: the query-request whose QUERY_TAG names ``query_id``."""
    return lambda x: (
        x.path == QUERY_REQUEST and json.loads(x.json["parameters"]["QUERY_TAG"])["query_id"] == query_id
    )


class TestSnowflake(ComputePluginContract):
    slow_query = "SELECT SYSTEM$WAIT(600)"
    writes_return_rows = False  # Snowflake DML has no RETURNING
    reads_null_timestamps = False  # fakesnow reads a NULL TIMESTAMP_TZ back as 1970-01-01
    # a query-request answered 503 is sent again by the connector, with the same request id
    driver_resends_safely = True

    def session_setting(self) -> tuple[str, str, object]:
        return ("SET contract_var = 'on'", "SELECT $contract_var", "on")

    def series_query(self, n: int) -> str:
        numbers = (
            f"SELECT ROW_NUMBER() OVER (ORDER BY SEQ4()) - 1 AS i FROM TABLE(GENERATOR(ROWCOUNT => {n}))"
        )
        return f"SELECT i, 'row ' || CAST(i AS VARCHAR) AS label FROM ({numbers}) ORDER BY i"

    @pytest.fixture(autouse=True)
    def _proxy(self, snowflake_proxy: RecordingProxy, long_queries: LongQueries) -> None:
        self.proxy = snowflake_proxy

    @pytest.fixture
    def compute_factory(self, snowflake_url: str, proxied_endpoint: dict[str, Any]) -> Any:
        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(snowflake_url, **{**proxied_endpoint, **overrides})

        return make

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        """The query-request tagged with the query's id has reached Snowflake (the proxy)."""
        self.proxy.wait_for(tagged(query_id), timeout=30)

    @pytest.mark.slow
    @pytest.mark.timeout(900)
    def test_pool_stats_exact_under_concurrency(self, make_plugin: Any) -> None:
        # 1600 queries, each a query-request and a COMMIT over HTTP to an emulator that parses
        # and transpiles every statement: minutes on a loaded 2-core machine
        super().test_pool_stats_exact_under_concurrency(make_plugin)

    def _started_then_expired(self, plugin: ComputePlugin, read_first: Any) -> Any:
        """A result whose first rows arrived before its deadline, which has passed since: the
        deadline grows until the first rows make it in time on a loaded machine."""
        for n, timeout in enumerate((0.5, 1, 2, 4, 8, 16)):
            result = plugin.execute(self.series_query(10_000), timeout=timeout, query_id=f"stream-{n}")
            try:
                rest = read_first(result)
            except QueryTimeoutError:
                assert plugin.pool_stats().in_use == 0
                continue
            wait_until_unlisted(plugin, f"stream-{n}")  # the deadline passes between two fetches
            return result, rest
        raise AssertionError("no rows arrived within 16 s")

    def test_deadline_covers_streaming(self, plugin: ComputePlugin) -> None:
        def first(result: Any) -> Any:
            assert len(result.fetchmany(100)) == 100
            return iter(result)

        result, rows = self._started_then_expired(plugin, first)
        with pytest.raises(QueryTimeoutError), result:
            next(rows)
        assert plugin.pool_stats().in_use == 0

    def test_deadline_covers_arrow_streaming(self, plugin: ComputePlugin) -> None:
        def first(result: Any) -> Any:
            batches = iter(result.arrow_batches(1000))
            assert next(batches).num_rows == 1000
            return batches

        result, batches = self._started_then_expired(plugin, first)
        with pytest.raises(QueryTimeoutError), result:
            next(batches)
        assert plugin.pool_stats().in_use == 0

    def test_cancel_from_another_thread(self, plugin: ComputePlugin) -> None:
        result = plugin.execute(self.series_query(10_000), batch_size=100)
        rows = iter(result)
        next(rows)
        canceller = threading.Thread(target=result.cancel)
        canceller.start()
        canceller.join()
        with pytest.raises(QueryCancelledError) as caught:
            for _ in rows:
                pass
        assert caught.value.query_id == result.query_id
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1") as again:
            assert again.fetchall() == [(1,)]

    @contextlib.contextmanager
    def losing(self, plugin: ComputePlugin, query_id: str, marker: str) -> Iterator[Callable[[], int]]:
        """The proxy answers the statement's first query-request 503, before Snowflake sees it."""
        rule = self.proxy.inject(tagged(query_id), status=503, body=b"unavailable", times=1)

        def ours(x: Any) -> bool:
            with contextlib.suppress(Exception):
                return bool(tagged(query_id)(x))
            return False

        def executions() -> int:
            sent = [x for x in self.proxy.exchanges if ours(x)]
            assert any(x.injected for x in sent), "the query-request was never answered 503"
            return len([x for x in sent if not x.injected])

        try:
            yield executions
        finally:
            self.proxy.remove(rule)
