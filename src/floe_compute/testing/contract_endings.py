"""The contract suite: results that end early: closed, dropped, failed blocks, disconnect."""

from __future__ import annotations

import gc
import sys
import threading
import time
import warnings

import pytest

from floe_compute import (
    ComputePlugin,
    QueryCancelledError,
    QueryError,
)
from floe_compute.testing.contract_base import ContractBase, Factory
from floe_compute.testing.threads import run_in_thread, wait_until_listed

__all__ = ["EndingsContract"]


class EndingsContract(ContractBase):
    """Results that end early: closed, dropped, failed blocks, disconnect."""

    # -- results that end early -------------------------------------------------------------

    def test_rowcount_counts_rows_handed_out(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(1000), batch_size=100) as result:
            assert result.rowcount == 0
            result.fetchone()
            assert result.rowcount == 1
            result.fetchmany(10)
            assert result.rowcount == 11
            rows = iter(result)
            for _ in range(5):
                next(rows)
            assert result.rowcount == 16
            assert len(list(rows)) == 984
            assert result.rowcount == 1000

    def test_closed_from_another_thread_never_looks_complete(self, plugin: ComputePlugin) -> None:
        result = plugin.execute(self.series_query(100_000), batch_size=100)
        result.fetchone()
        closer = threading.Thread(target=result.close)
        closer.start()
        closer.join()
        with pytest.raises(QueryError, match="closed"):
            result.fetchall()
        with pytest.raises(QueryError, match="closed"):
            list(result)
        assert plugin.pool_stats().in_use == 0

    def test_exhausted_result_reads_empty(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(3)) as result:
            assert len(result.fetchall()) == 3
        assert result.fetchall() == []
        assert result.fetchone() is None

    def test_a_failing_block_rolls_back(self, plugin: ComputePlugin) -> None:
        plugin.execute("CREATE TABLE contract_rollback (id INTEGER)").close()
        with (
            pytest.raises(RuntimeError, match="caller failed"),
            plugin.execute("INSERT INTO contract_rollback VALUES (1)"),
        ):
            raise RuntimeError("caller failed")
        with plugin.execute("INSERT INTO contract_rollback VALUES (2)"):
            pass
        with plugin.execute("SELECT id FROM contract_rollback ORDER BY id") as result:
            assert result.fetchall() == ([(1,), (2,)] if self.commits_each_statement else [(2,)])
        assert plugin.pool_stats().in_use == 0

    def test_a_write_is_committed_when_closed_after_its_deadline(self, plugin: ComputePlugin) -> None:
        """The deadline bounds the work on the engine: a write that finished is not lost because
        the caller's block took longer than its timeout."""
        plugin.execute("CREATE TABLE contract_late_write (id INTEGER)").close()
        with plugin.execute(
            "INSERT INTO contract_late_write VALUES (1)", timeout=self.late_deadline
        ) as result:
            deadline = result.handle.deadline
            assert deadline is not None
            while time.monotonic() < deadline + 0.2:  # the deadline passes while the block runs
                time.sleep(0.02)
        with plugin.execute("SELECT count(*) FROM contract_late_write") as result:
            assert result.fetchall() == [(1,)]

    def test_a_dropped_write_is_rolled_back(self, plugin: ComputePlugin) -> None:
        """Nobody closed it (the code holding it may have failed): nothing is committed."""
        plugin.execute("CREATE TABLE contract_dropped (id INTEGER)").close()
        result = plugin.execute("INSERT INTO contract_dropped VALUES (1)")
        with pytest.warns(ResourceWarning, match="rolled back"):
            del result
            gc.collect()
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT count(*) FROM contract_dropped") as result:
            assert result.fetchall() == [(1 if self.commits_each_statement else 0,)]

    def test_dropped_result_is_released_even_when_warnings_are_errors(self, plugin: ComputePlugin) -> None:
        result = plugin.execute(self.series_query(100_000))
        result.fetchone()
        raised: list[BaseException | None] = []
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: raised.append(unraisable.exc_value)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ResourceWarning)
                del result
                gc.collect()
        finally:
            sys.unraisablehook = hook
        assert [type(e) for e in raised] == [ResourceWarning]  # the warning, raised as an error
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1") as again:
            assert again.fetchall() == [(1,)]

    def test_disconnect_cancels_running_queries(self, make_plugin: Factory) -> None:
        plugin = make_plugin()
        outcome = run_in_thread(lambda: plugin.execute(self.slow_query, query_id="contract-bye").fetchall())
        wait_until_listed(plugin, "contract-bye")
        started = time.monotonic()
        plugin.disconnect()
        assert time.monotonic() - started < self.cancel_grace
        outcome.join()
        assert isinstance(outcome.error, QueryCancelledError), outcome
