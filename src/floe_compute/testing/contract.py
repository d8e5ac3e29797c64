"""The contract suite: what a user can rely on from every ComputePlugin."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from floe_compute import (
    ComputeError,
    ComputePlugin,
    ConfigError,
    HealthState,
    PoolExhaustedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
)
from floe_compute.testing.contract_arrow_types import ArrowTypesContract
from floe_compute.testing.contract_bound_values import BoundValueContract
from floe_compute.testing.contract_commit import CommitContract
from floe_compute.testing.contract_parameters import ParameterContract
from floe_compute.testing.threads import run_in_thread, wait_until_listed

Factory = Callable[..., ComputePlugin]

__all__ = ["ComputePluginContract"]


class ComputePluginContract(ArrowTypesContract, CommitContract, ParameterContract, BoundValueContract):
    """Inherit, provide ``compute_factory``, and override the SQL hooks your engine needs."""

    #: A statement that runs for minutes unless it is cancelled.
    slow_query = "SELECT count(*) FROM range(10000000000)"
    #: Seconds within which a cancelled query must have let go of its connection.
    cancel_grace = 2.0
    #: A deadline that passes after ``execute()`` returned (before the rows are read, or before a
    #: finished write is closed): longer for engines whose statements take longer than this to
    #: start, or a one-row INSERT to finish, on a loaded machine.
    late_deadline = 0.2
    #: Whether a statement commits as it finishes, with no transaction for a failure afterwards to
    #: roll back (BigQuery: each statement is a job). The caller's error still reaches the caller.
    commits_each_statement = False
    #: Statements each of eight threads runs in the pool-statistics test: fewer for engines where
    #: a statement is several round trips to a slow server (the test still makes threads wait).
    statements_per_thread = 200

    def series_query(self, n: int) -> str:
        """``n`` rows: an integer ``i`` from 0 and a text ``label``."""
        return f"SELECT i, 'row ' || CAST(i AS VARCHAR) AS label FROM range({n}) AS t(i) ORDER BY i"

    def endless_query(self) -> str:
        """A result that streams rows for minutes (the deadline must stop it mid-iteration)."""
        return "SELECT i FROM range(10000000000) AS t(i)"

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture
    def compute_factory(self) -> Factory:
        raise NotImplementedError("provide a compute_factory fixture: (**overrides) -> ComputePlugin")

    @pytest.fixture
    def make_plugin(self, compute_factory: Factory) -> Iterator[Factory]:
        created: list[ComputePlugin] = []

        def make(**overrides: Any) -> ComputePlugin:
            plugin = compute_factory(**overrides)
            plugin.connect()
            created.append(plugin)
            return plugin

        yield make
        for plugin in created:
            plugin.disconnect()

    @pytest.fixture
    def plugin(self, make_plugin: Factory) -> ComputePlugin:
        return make_plugin()

    # -- execute and fetch ------------------------------------------------------------------

    def test_rows_are_tuples_in_order(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(5)) as result:
            assert result.columns == ["i", "label"]
            rows = list(result)
        assert rows == [(i, f"row {i}") for i in range(5)]
        assert all(type(row) is tuple for row in rows)

    def test_fetchone_fetchmany_fetchall_and_rowcount(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(10), batch_size=3) as result:
            assert result.fetchone() == (0, "row 0")
            assert [r[0] for r in result.fetchmany(4)] == [1, 2, 3, 4]
            assert result.rowcount >= 5
            assert [r[0] for r in result.fetchall()] == [5, 6, 7, 8, 9]
            assert result.fetchone() is None
            assert result.fetchmany(2) == []
            assert result.rowcount == 10

    def test_arrow_batches_is_a_record_batch_reader(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(25_000)) as result:
            reader = result.arrow_batches(10_000)
            assert isinstance(reader, pa.RecordBatchReader)
            assert reader.schema.names == ["i", "label"]
            sizes = [batch.num_rows for batch in reader]
        assert sum(sizes) == 25_000
        assert max(sizes) <= 10_000

    def test_to_arrow_has_every_row(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(1000)) as result:
            table = result.to_arrow()
        assert table.num_rows == 1000
        assert table.column("i").to_pylist() == list(range(1000))

    def test_statement_without_rows(self, plugin: ComputePlugin) -> None:
        plugin.execute("CREATE TABLE contract_ddl (id INTEGER)").close()
        plugin.execute("INSERT INTO contract_ddl VALUES (1), (2)").close()
        with plugin.execute("SELECT count(*) FROM contract_ddl") as result:
            assert result.fetchall() == [(2,)]

    # -- parameters and SQLAlchemy ----------------------------------------------------------

    def test_named_parameters_bind(self, plugin: ComputePlugin) -> None:
        sql = f"SELECT i FROM ({self.series_query(100)}) AS s WHERE i >= :low AND i < :high"
        with plugin.execute(sql, {"low": 10, "high": 13}) as result:
            assert result.fetchall() == [(10,), (11,), (12,)]

    def test_sqlalchemy_executables_are_accepted(self, plugin: ComputePlugin) -> None:
        with plugin.execute(sa.text("SELECT :x + 1 AS y"), {"x": 41}) as result:
            assert result.fetchall() == [(42,)]
        with plugin.execute(sa.select(sa.literal(7).label("seven"))) as result:
            assert result.columns == ["seven"]
            assert result.fetchall() == [(7,)]

    def test_wrong_parameter_names_are_named(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryError, match=r"missing :low.*unexpected :lo\b"):
            plugin.execute("SELECT :low AS x", {"lo": 1})
        assert plugin.pool_stats().in_use == 0

    def test_engine_works_with_sqlalchemy_inspect(self, plugin: ComputePlugin) -> None:
        plugin.execute("CREATE TABLE contract_inspect (id INTEGER PRIMARY KEY, name VARCHAR(20))").close()
        inspector = sa.inspect(plugin.engine)
        assert "contract_inspect" in inspector.get_table_names()
        columns = [c["name"] for c in inspector.get_columns("contract_inspect")]
        assert columns == ["id", "name"]
        assert inspector.get_pk_constraint("contract_inspect")["constrained_columns"] == ["id"]

    def test_strings_run_as_written(self, plugin: ComputePlugin) -> None:
        """Colons and percent signs in literals are not parameters; without ``params`` nothing binds."""
        with plugin.execute("SELECT 'meet at 10 :30' AS a, ':x' AS b, '100%' AS c") as result:
            assert result.fetchall() == [("meet at 10 :30", ":x", "100%")]
        with plugin.execute("SELECT ':x' AS a, :y AS b, '50%' AS c -- :z", {"y": 1}) as result:
            assert result.fetchall() == [(":x", 1, "50%")]

    def test_several_statements_in_one_string(self, plugin: ComputePlugin) -> None:
        script = "CREATE TABLE contract_script (id INTEGER); SELECT 2 AS two"
        if not plugin.runs_scripts:
            with pytest.raises(QueryError, match="2 statements; run them one at a time"):
                plugin.execute(script)
            assert plugin.pool_stats().in_use == 0
            return
        with plugin.execute(script) as result:  # every statement runs; the last one's rows
            assert result.fetchall() == [(2,)]
        with plugin.execute("SELECT count(*) FROM contract_script") as result:
            assert result.fetchall() == [(0,)]

    # -- errors -----------------------------------------------------------------------------

    def test_missing_table_names_query_and_table(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryError) as caught:
            plugin.execute("SELECT * FROM contract_no_such_table")
        error = caught.value
        assert error.query_id is not None
        assert error.query_id in str(error)
        assert "contract_no_such_table" in str(error)
        assert error.statement is not None and error.statement.startswith("SELECT")
        assert plugin.name in str(error)
        assert error.__cause__ is not None
        assert not isinstance(error.__cause__, sa.exc.SQLAlchemyError)
        assert plugin.pool_stats().in_use == 0

    def test_syntax_error_is_a_query_error(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryError, match=r"(?i)syntax"):
            plugin.execute("SELEC 1")
        assert plugin.pool_stats().in_use == 0

    def test_invalid_arguments_are_config_errors(self, plugin: ComputePlugin) -> None:
        with pytest.raises(ConfigError, match="timeout"):
            plugin.execute("SELECT 1", timeout=-1)
        with pytest.raises(ConfigError, match="batch_size"):
            plugin.execute("SELECT 1", batch_size=0)

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
        # the only connection is free again and usable: the query is not still running on it
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT 1", timeout=5) as result:
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

    # -- limits -----------------------------------------------------------------------------

    def test_max_result_rows(self, make_plugin: Factory) -> None:
        plugin = make_plugin(limits={"max_result_rows": 100})
        with plugin.execute(self.series_query(100)) as result:
            assert len(result.fetchall()) == 100
        with pytest.raises(ResourceLimitError, match="max_result_rows=100"):
            plugin.execute(self.series_query(101)).fetchall()
        with pytest.raises(ResourceLimitError), plugin.execute(self.series_query(50_000)) as result:
            for _ in result.arrow_batches(1000):
                pass
        assert plugin.pool_stats().in_use == 0

    # -- connections always come back -------------------------------------------------------

    def test_connection_returned_when_exhausted(self, plugin: ComputePlugin) -> None:
        result = plugin.execute(self.series_query(10))
        assert plugin.pool_stats().in_use == 1
        list(result)
        assert result.closed
        assert plugin.pool_stats().in_use == 0

    def test_connection_returned_when_closed_early(self, plugin: ComputePlugin) -> None:
        result = plugin.execute(self.series_query(100_000))
        result.fetchmany(5)
        result.close()
        assert plugin.pool_stats().in_use == 0

    def test_connection_returned_when_dropped(self, plugin: ComputePlugin) -> None:
        result = plugin.execute(self.series_query(100_000))
        result.fetchone()
        with pytest.warns(ResourceWarning, match="not closed"):
            del result
            gc.collect()
        assert plugin.pool_stats().in_use == 0

    def test_pool_exhaustion_waits_then_fails(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0, "timeout": 0.3})
        held = plugin.execute(self.series_query(100))
        started = time.monotonic()
        with pytest.raises(PoolExhaustedError, match=r"size=1.*pool.timeout=0.3s"):
            plugin.execute("SELECT 1")
        assert time.monotonic() - started >= 0.3
        held.close()
        assert plugin.pool_stats().timeouts == 1
        with plugin.execute("SELECT 1") as result:
            assert result.fetchall() == [(1,)]

    # -- health and statistics --------------------------------------------------------------

    def test_health_check_is_healthy(self, plugin: ComputePlugin) -> None:
        status = plugin.health_check()
        assert status.status is HealthState.HEALTHY
        assert str(status.status) == "healthy"
        assert status.latency_ms > 0
        assert status.pool is not None and status.pool.in_use == 0

    def test_pool_stats_exact_under_concurrency(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 4, "max_overflow": 0, "timeout": 60})
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(self.statements_per_thread):
                    with plugin.execute("SELECT 1") as result:
                        result.fetchall()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        stats = plugin.pool_stats()
        assert stats.checkouts == 8 * self.statements_per_thread
        assert stats.in_use == 0
        assert stats.waiting == 0
        assert stats.connects <= 4
        assert stats.max == 4

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

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        """Wait until the engine itself shows the query as running (it was sent with the tag
        ``contract_query=<query_id>``). Engines that can list their running statements override
        this; the default checks nothing beyond ``running_queries()``."""

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

    # -- asyncio ----------------------------------------------------------------------------

    def test_async_rows_fetches_and_arrow(self, plugin: ComputePlugin) -> None:
        async def main() -> None:
            async with plugin.aexecute(self.series_query(10), batch_size=3, query_id="contract-a") as r:
                assert r.query_id == "contract-a"
                assert r.columns == ["i", "label"]
                assert await r.fetchone() == (0, "row 0")
                assert [row[0] for row in await r.fetchmany(2)] == [1, 2]
                assert r.rowcount == 3
                assert [row[0] async for row in r] == list(range(3, 10))
            result = await plugin.aexecute(self.series_query(2500))
            sizes = [batch.num_rows async for batch in result.arrow_batches(1000)]
            assert sum(sizes) == 2500
            assert max(sizes) <= 1000
            await result.close()
            result = await plugin.aexecute(self.series_query(5))
            assert (await result.to_arrow()).num_rows == 5
            result = await plugin.aexecute(self.series_query(5))
            assert len(await result.fetchall()) == 5
            assert (await plugin.ahealth_check()).status is HealthState.HEALTHY

        asyncio.run(main())
        assert plugin.pool_stats().in_use == 0

    def test_async_reads_after_fetchone_lose_no_row(self, plugin: ComputePlugin) -> None:
        async def main() -> None:
            result = await plugin.aexecute(self.series_query(10), batch_size=4)
            assert await result.fetchone() == (0, "row 0")
            table = await result.to_arrow()
            assert table.column("i").to_pylist() == list(range(1, 10))
            assert result.rowcount == 10
            result = await plugin.aexecute(self.series_query(10), batch_size=4)
            assert await result.fetchone() == (0, "row 0")
            batches = [batch async for batch in result.arrow_batches(3)]
            assert [i for batch in batches for i in batch.column("i").to_pylist()] == list(range(1, 10))

        asyncio.run(main())
        assert plugin.pool_stats().in_use == 0

    def test_async_more_queries_than_connections(self, make_plugin: Factory) -> None:
        """Coroutines waiting for a connection never hold up the reads that would free one."""
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0, "timeout": 10})

        async def one(n: int) -> int:
            async with plugin.aexecute(self.series_query(n), batch_size=2) as result:
                return len([row async for row in result])

        async def main() -> list[int]:
            return list(await asyncio.gather(*(one(n) for n in (5, 6, 7, 8))))

        assert asyncio.run(main()) == [5, 6, 7, 8]
        assert plugin.pool_stats().timeouts == 0

    def test_async_timeout_limits_and_errors_as_blocking(self, make_plugin: Factory) -> None:
        plugin = make_plugin(limits={"max_result_rows": 5})

        async def main() -> None:
            with pytest.raises(QueryTimeoutError):
                result = await plugin.aexecute(self.slow_query, timeout=0.3)
                await result.fetchall()
            with pytest.raises(QueryError, match="contract_async_missing"):
                await plugin.aexecute("SELECT * FROM contract_async_missing")
            with pytest.raises(ResourceLimitError, match="max_result_rows=5"):
                async with plugin.aexecute(self.series_query(10)) as result:
                    await result.fetchall()

        asyncio.run(main())
        assert plugin.pool_stats().in_use == 0
        assert plugin.running_queries() == []

    def test_cancelling_the_task_cancels_the_query(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0})

        async def main() -> None:
            async def run() -> None:
                result = await plugin.aexecute(
                    self.slow_query, query_id="contract-task", tags={"contract_query": "contract-task"}
                )
                await result.fetchall()

            task = asyncio.create_task(run())
            deadline = time.monotonic() + 30
            while "contract-task" not in {q.query_id for q in plugin.running_queries()}:
                assert not task.done(), f"the query ended before it was listed: {task}"
                assert time.monotonic() < deadline, "contract-task never showed as running"
                await asyncio.sleep(0.005)
            self.wait_until_running_on_engine(plugin, "contract-task")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        # once the cancelled task has ended, the connection is back and the query is gone
        assert plugin.pool_stats().in_use == 0
        assert plugin.running_queries() == []
        with plugin.execute("SELECT 1", timeout=10) as result:
            assert result.fetchall() == [(1,)]

    # -- secrets ----------------------------------------------------------------------------

    #: A secret value the suite configures and binds, and then looks for everywhere it must not be.
    secret = "Contract-S3cret-9f1c"

    def secret_overrides(self) -> dict[str, Any]:
        """Overrides that give the plugin a secret (default: ``password``); an engine whose
        password must be right overrides this with a secret it can accept."""
        return {"password": self.secret}

    def test_secrets_never_in_repr_dumps_or_health(self, make_plugin: Factory) -> None:
        plugin = make_plugin(**self.secret_overrides())
        assert self.secret in plugin.config.secrets  # the guard below is not vacuous
        status = plugin.health_check()
        shown = [
            repr(plugin),
            str(plugin),
            repr(plugin.config),
            str(plugin.config),
            plugin.config.model_dump_json(),
            str(plugin.config.model_dump()),
            plugin.pool_name,
            repr(status),
            status.message,
        ]
        for text in shown:
            assert self.secret not in text

    def test_errors_are_compute_errors(self, plugin: ComputePlugin) -> None:
        for sql in ("SELECT * FROM contract_missing", "SELEC"):
            with pytest.raises(ComputeError):
                plugin.execute(sql)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert plugin.health_check().status is HealthState.HEALTHY
