"""The watchdog: deadlines fire on time whatever an engine's cancel does, and a stopped query's
cancel is repeated until it ends."""

from __future__ import annotations

import threading
import time

import pytest

from floe_compute import QueryTimeoutError
from floe_compute.context import QueryContext
from floe_compute.engines.duckdb import DuckDBComputePlugin
from floe_compute.testing import run_in_thread, wait_until_listed
from floe_compute.timeouts import QueryHandle, QueryState, watchdog

BLOCKING = "SELECT count(*) FROM range(10000000000)"


class SlowCancelDuckDB(DuckDBComputePlugin):
    """DuckDB whose cancel request hangs until released, like an engine's cancel call across a
    network that stopped answering."""

    entered = threading.Event()
    release = threading.Event()

    def cancel(self, context: QueryContext) -> None:
        type(self).entered.set()
        type(self).release.wait(60)
        super().cancel(context)


def test_a_hanging_engine_cancel_does_not_hold_up_other_deadlines() -> None:
    slow = SlowCancelDuckDB(DuckDBComputePlugin.config_class.model_validate({"url": "duckdb:///:memory:"}))
    other = DuckDBComputePlugin(
        DuckDBComputePlugin.config_class.model_validate({"url": "duckdb:///:memory:"})
    )
    try:
        stuck = run_in_thread(lambda: slow.execute(BLOCKING, timeout=0.2, query_id="stuck").fetchall())
        wait_until_listed(slow, "stuck")
        assert SlowCancelDuckDB.entered.wait(30), "the deadline of the first query never fired"
        # the first query's cancel hangs; the second query's deadline must still fire
        with pytest.raises(QueryTimeoutError):
            other.execute(BLOCKING, timeout=0.3).fetchall()
        assert not SlowCancelDuckDB.release.is_set()
        assert stuck.thread.is_alive()  # still waiting for its engine cancel
    finally:
        SlowCancelDuckDB.release.set()
    assert isinstance(stuck.join().error, QueryTimeoutError)
    slow.disconnect()
    other.disconnect()


def test_a_stopped_query_keeps_its_cancel_repeats_when_the_schedule_is_compacted() -> None:
    """Many finished queries with far deadlines make the watchdog compact its schedule; the repeats
    of a cancel for a query that was stopped but has not ended must survive it."""
    calls: list[float] = []

    def cancel() -> None:
        calls.append(time.monotonic())

    stopped = QueryHandle("stopped-not-ended", None, cancel)
    assert stopped.cancel()
    try:
        # the repeats have reached long intervals: the next one waits in the schedule
        deadline = time.monotonic() + 30
        while len(calls) < 5:
            assert time.monotonic() < deadline, f"the cancel was sent {len(calls)} times"
            time.sleep(0.01)
        sent = len(calls)
        for i in range(3000):  # more than the compaction threshold, in a fraction of a second
            handle = QueryHandle(f"done-{i}", 3600.0, None)
            watchdog.watch(handle)
            handle.finish()
        while len(calls) < sent + 2:
            assert time.monotonic() < deadline, f"the cancel was sent {len(calls)} times, then never again"
            time.sleep(0.01)
    finally:
        assert stopped.finish() is QueryState.CANCELLED
