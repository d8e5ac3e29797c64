"""The contract suite: deadlines that cancel on the engine, cancel from another thread, naming and
listing queries."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from floe_compute import (
    ComputeError,
    ComputePlugin,
    ConfigError,
    HealthState,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
)
from floe_compute.testing.contract_base import ContractBase, Factory
from floe_compute.testing.threads import run_in_thread, wait_until_listed

__all__ = ["StoppingContract"]


class StoppingContract(ContractBase):
    """Deadlines that cancel on the engine, cancel from another thread, naming and listing queries."""

    # -- timeouts and cancellation ----------------------------------------------------------

    def test_timeout_cancels_on_the_engine(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0})
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError) as caught:
            plugin.execute(self.slow_query, timeout=0.5).fetchall()
        waited = time.monotonic() - started
        error = caught.value
        assert error.timeout == 0.5
        assert 0.5 <= error.elapsed < 0.5 + self.cancel_grace
        assert waited < 0.5 + self.cancel_grace
        assert str(error.query_id) in str(error)
        # the only connection is free again and usable: the query is not still running on it (no
        # deadline of its own: a loaded engine may take seconds to answer, a stuck one never does)
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1") as result:
            assert result.fetchall() == [(1,)]

    def test_timeout_is_logged_once(self, plugin: ComputePlugin, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level("WARNING", logger="floe_compute"), pytest.raises(QueryTimeoutError):
            plugin.execute(self.slow_query, timeout=0.3).fetchall()
        lines = [r for r in caplog.records if "timed out" in r.getMessage()]
        assert len(lines) == 1
        fields = lines[0].floe  # type: ignore[attr-defined]
        assert fields["engine"] == plugin.name
        assert fields["timeout_s"] == 0.3
        assert fields["elapsed_s"] >= 0.3
        assert fields["query_id"].startswith("q-")
        assert fields["statement"].startswith("SELECT")

    def test_default_timeout_comes_from_config(self, make_plugin: Factory) -> None:
        plugin = make_plugin(timeouts={"query": 0.3})
        with pytest.raises(QueryTimeoutError) as caught:
            plugin.execute(self.slow_query).fetchall()
        assert caught.value.timeout == 0.3

    def test_deadline_covers_streaming(self, plugin: ComputePlugin) -> None:
        # rows must arrive before the deadline; on a loaded machine the first ones may be late, so
        # the deadline grows until they do (what is asserted does not depend on the machine's speed)
        for timeout in (0.5, 1, 2, 4, 8, 16):
            seen = 0
            with pytest.raises(QueryTimeoutError), plugin.execute(self.endless_query(), timeout=timeout) as r:
                for _ in r:
                    seen += 1
            assert plugin.pool_stats().in_use == 0
            if seen:
                break
        assert seen > 0

    def test_deadline_covers_arrow_streaming(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryTimeoutError), plugin.execute(self.endless_query(), timeout=0.5) as result:
            for _ in result.arrow_batches(1000):
                pass
        assert plugin.pool_stats().in_use == 0

    def test_cancel_from_another_thread(self, plugin: ComputePlugin) -> None:
        result = plugin.execute(self.endless_query())
        timer = threading.Timer(0.3, result.cancel)
        timer.start()
        with pytest.raises(QueryCancelledError) as caught:
            for _ in result:
                pass
        timer.join()
        assert caught.value.query_id == result.query_id
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1") as again:
            assert again.fetchall() == [(1,)]

    # -- naming, listing and stopping queries ----------------------------------------------

    def test_query_id_and_tags_are_listed_while_running(self, plugin: ComputePlugin) -> None:
        tags = {"dag": "nightly", "team": "growth"}
        with plugin.execute(self.series_query(100), query_id="contract-job-1", tags=tags) as result:
            assert result.query_id == "contract-job-1"
            [running] = plugin.running_queries()
            assert running.query_id == "contract-job-1"
            assert dict(running.tags) == tags
            assert running.summary.startswith("SELECT")
            assert running.elapsed_s >= 0
            assert running.started_at.tzinfo is not None
            with pytest.raises(ComputeError, match="contract-job-1"):
                plugin.execute("SELECT 1", query_id="contract-job-1")
            result.fetchall()
        assert plugin.running_queries() == []
        with plugin.execute("SELECT 1", query_id="contract-job-1") as again:  # free again
            assert again.fetchall() == [(1,)]

    @pytest.mark.parametrize(
        ("tags", "named"),
        [({"dag": 1}, "dag"), ({"bad key": "x"}, "bad key"), ({"long": "x" * 300}, "long"), ({3: "x"}, "3")],
    )
    def test_invalid_tags_are_config_errors(
        self, plugin: ComputePlugin, tags: dict[Any, Any], named: str
    ) -> None:
        with pytest.raises(ConfigError, match=named):
            plugin.execute("SELECT 1", tags=tags)
        assert plugin.running_queries() == []
        assert plugin.pool_stats().in_use == 0

    def test_finished_failed_and_stopped_queries_are_not_listed(self, plugin: ComputePlugin) -> None:
        plugin.execute("SELECT 1").close()
        with pytest.raises(QueryError):
            plugin.execute("SELECT * FROM contract_not_there")
        with pytest.raises(QueryTimeoutError):
            plugin.execute(self.slow_query, timeout=0.3).fetchall()
        result = plugin.execute(self.series_query(10_000), batch_size=10)
        result.cancel()
        with pytest.raises(QueryCancelledError):
            result.fetchall()
        assert plugin.running_queries() == []
        assert plugin.cancel_query(result.query_id) is False
        assert plugin.cancel_query("never-ran") is False

    def test_cancel_query_while_execute_is_blocked(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0})
        outcome = run_in_thread(
            lambda: plugin.execute(
                self.slow_query, query_id="contract-stop-me", tags={"contract_query": "contract-stop-me"}
            ).fetchall()
        )
        wait_until_listed(plugin, "contract-stop-me")
        self.wait_until_running_on_engine(plugin, "contract-stop-me")
        cancelled_at = time.monotonic()
        assert plugin.cancel_query("contract-stop-me") is True
        outcome.join()
        assert isinstance(outcome.error, QueryCancelledError), outcome
        assert outcome.error.query_id == "contract-stop-me"
        assert outcome.ended is not None and outcome.ended - cancelled_at < self.cancel_grace
        assert plugin.cancel_query("contract-stop-me") is False
        assert plugin.running_queries() == []
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1", timeout=10) as result:  # the only connection works
            assert result.fetchall() == [(1,)]

    def test_cancel_before_the_statement_starts(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0, "timeout": 60})
        plugin.execute("CREATE TABLE contract_never (id INTEGER)").close()
        held = plugin.execute(self.series_query(100))  # the only connection
        outcome = run_in_thread(
            lambda: plugin.execute("INSERT INTO contract_never VALUES (1)", query_id="contract-early")
        )
        wait_until_listed(plugin, "contract-early")
        assert plugin.cancel_query("contract-early") is True
        outcome.join()
        assert isinstance(outcome.error, QueryCancelledError), outcome
        assert "before it started" in str(outcome.error)
        held.close()
        with plugin.execute("SELECT count(*) FROM contract_never") as result:
            assert result.fetchall() == [(0,)]
        assert plugin.pool_stats().in_use == 0

    def test_deadline_covers_waiting_for_a_connection(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0, "timeout": 60})
        held = plugin.execute(self.series_query(100))
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError, match="before it started") as caught:
            plugin.execute("SELECT 1", timeout=0.3)
        assert time.monotonic() - started < 0.3 + self.cancel_grace  # not pool.timeout=60
        assert caught.value.timeout == 0.3
        held.close()
        stats = plugin.pool_stats()
        assert stats.in_use == 0
        assert stats.timeouts == 0  # a query's deadline, not a pool that gave up

    def test_a_deadline_that_passes_between_fetches_claims_no_engine_cancel(
        self, plugin: ComputePlugin
    ) -> None:
        result = plugin.execute(self.series_query(10), timeout=self.late_deadline, query_id="contract-late")
        deadline = time.monotonic() + 30
        while plugin.running_queries():  # a stopped query is no longer listed: the deadline passed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(QueryTimeoutError) as caught:
            result.fetchall()
        assert "cancelled on the engine" not in str(caught.value)
        assert "discarded" in str(caught.value)
        assert plugin.pool_stats().in_use == 0

    def test_saturated_pool_is_degraded_at_once_without_counting_a_timeout(
        self, make_plugin: Factory
    ) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0, "timeout": 30})
        held = plugin.execute(self.series_query(100))
        started = time.monotonic()
        status = plugin.health_check()
        assert time.monotonic() - started < 5  # not pool.timeout=30
        assert status.status is HealthState.DEGRADED
        assert "saturated" in status.message
        held.close()
        assert plugin.pool_stats().timeouts == 0
        assert plugin.health_check().status is HealthState.HEALTHY
