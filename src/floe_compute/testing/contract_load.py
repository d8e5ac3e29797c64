"""The contract on bulk loads (``load_arrow``): what is loaded reads back equal, NULLs included;
columns match by name; a load that fails or is stopped midway leaves the table as it was; a load
is a query to ``running_queries()``, ``cancel_query()``, the deadline and asyncio."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

from floe_compute import (
    ComputeError,
    ComputePlugin,
    ConfigError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
)
from floe_compute.testing.threads import run_in_thread, wait_until_listed, wait_until_unlisted

__all__ = ["LoadContract"]

UTC = datetime.timezone.utc


class LoadContract:
    """Mixed into :class:`~floe_compute.testing.ComputePluginContract`."""

    #: Whether the engine has a ``load_arrow`` path (None: as its ``load_path`` says); engines
    #: without one must say so when called.
    loads_arrow: bool | None = None
    #: Whether a failed or stopped load leaves the table as it was (one transaction).
    loads_atomically = True
    #: Whether a NULL timestamp with time zone reads back as NULL (fakesnow reads it as 1970-01-01,
    #: though ``IS NULL`` is true: then the suite checks that with SQL instead).
    reads_null_timestamps = True
    #: Whether a timestamp with time zone reads back without its zone, as its wall time in the
    #: session's zone, UTC on the test servers (Spark's TIMESTAMP through the Thrift server).
    reads_zoned_timestamps_naive = False
    #: Whether a date reads back as its ISO text (PyHive's rows from the Spark Thrift server).
    reads_dates_as_text = False

    def load_sample(self) -> Any:
        """Rows of the types every engine maps, with NULLs in each column (sorted by ``id``)."""
        import pyarrow as pa

        return pa.table(
            {
                "id": pa.array([1, 2, 3], pa.int64()),
                "label": pa.array(["a", "", None], pa.string()),
                "amount": pa.array(
                    [decimal.Decimal("12.50"), None, decimal.Decimal("-0.01")], pa.decimal128(10, 2)
                ),
                "ratio": pa.array([0.5, None, -2.25], pa.float64()),
                "flag": pa.array([True, False, None], pa.bool_()),
                "day": pa.array([datetime.date(2024, 2, 29), None, datetime.date(1970, 1, 1)], pa.date32()),
                "happened_at": pa.array(
                    [
                        datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
                        None,
                        datetime.datetime(1999, 12, 31, tzinfo=UTC),
                    ],
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        )

    def _read(self, plugin: ComputePlugin, table: str) -> list[dict[str, Any]]:
        with plugin.execute(f"SELECT * FROM {table} ORDER BY id") as result:
            rows, names = result.fetchall(), result.columns
        # engines that fold unquoted names (Snowflake: upper case) return the names so
        return [{name.lower(): value for name, value in zip(names, row, strict=True)} for row in rows]

    def _assert_loaded(self, plugin: ComputePlugin, table: str, sample: Any) -> None:
        expected, rows = sample.to_pylist(), self._read(plugin, table)
        if not self.reads_null_timestamps:
            with plugin.execute(f"SELECT id FROM {table} WHERE happened_at IS NULL") as nulls:
                assert nulls.fetchall() == [(2,)]
            expected[1]["happened_at"] = rows[1]["happened_at"]
        for row in expected:
            if self.reads_zoned_timestamps_naive and row["happened_at"] is not None:
                row["happened_at"] = row["happened_at"].astimezone(UTC).replace(tzinfo=None)
            if self.reads_dates_as_text and row["day"] is not None:
                row["day"] = row["day"].isoformat()
        assert rows == expected, (rows, expected)

    def _count(self, plugin: ComputePlugin, table: str) -> int:
        with plugin.execute(f"SELECT count(*) FROM {table}") as result:
            count: int = result.fetchall()[0][0]
        return count

    def _endless(self, stop_after: float = 120.0) -> Iterator[Any]:
        """Batches for minutes, a source paced at 50 batches a second (a stream, not a flood: an
        emulator keeps what it is sent in memory): a load only its deadline or a cancel ends."""
        import time

        import pyarrow as pa

        ended = time.monotonic() + stop_after
        for n in itertools.count():
            if time.monotonic() > ended:
                return
            yield pa.record_batch({"id": pa.array(range(n * 1000, n * 1000 + 1000), pa.int64())})
            time.sleep(0.02)  # the source's pace, not a wait for an event

    def _loads(self, plugin: ComputePlugin) -> bool:
        return self.loads_arrow if self.loads_arrow is not None else plugin.load_path is not None

    @pytest.fixture
    def loader(self, plugin: ComputePlugin) -> ComputePlugin:
        if not self._loads(plugin):
            pytest.skip("this engine has no load_arrow path (test_load_says_when_an_engine_has_no_path)")
        return plugin

    def test_load_says_when_an_engine_has_no_path(self, plugin: ComputePlugin) -> None:
        if self._loads(plugin):
            assert plugin.load_path, "an engine that loads names its native path (load_path)"
            return
        with pytest.raises(ComputeError, match="no native load path"):
            plugin.load_arrow("contract_no_load", self.load_sample(), mode="create")

    def test_load_create_reads_back_equal(self, loader: ComputePlugin) -> None:
        sample = self.load_sample()
        result = loader.load_arrow("contract_load", sample, mode="create")
        assert (result.rows, result.table) == (3, "contract_load")
        assert result.bytes > 0 and result.seconds > 0
        self._assert_loaded(loader, "contract_load", sample)
        assert loader.pool_stats().in_use == 0

    def test_load_append_matches_columns_by_name(self, loader: ComputePlugin) -> None:
        sample = self.load_sample()
        loader.load_arrow("contract_append", sample.slice(0, 1), mode="create")
        reordered = sample.slice(1).select(list(reversed(sample.column_names)))
        result = loader.load_arrow("contract_append", reordered.to_batches(max_chunksize=1))
        assert result.rows == 2
        self._assert_loaded(loader, "contract_append", sample)

    @pytest.mark.parametrize("change", ["missing", "extra"])
    def test_load_append_with_unmatched_columns_sends_nothing(
        self, loader: ComputePlugin, change: str
    ) -> None:
        import pyarrow as pa

        sample = self.load_sample()
        loader.load_arrow("contract_unmatched", sample, mode="create")
        data = (
            sample.drop_columns(["ratio"])
            if change == "missing"
            else sample.append_column("surplus", pa.array([1, 2, 3]))
        )
        with pytest.raises(ConfigError, match="ratio" if change == "missing" else "surplus"):
            loader.load_arrow("contract_unmatched", data)
        assert self._count(loader, "contract_unmatched") == 3

    def test_load_append_into_a_missing_table_says_so(self, loader: ComputePlugin) -> None:
        with pytest.raises(ConfigError, match="contract_absent: no such table"):
            loader.load_arrow("contract_absent", self.load_sample())
        loader.load_arrow("contract_absent", self.load_sample(), mode="create")  # nothing was left
        assert self._count(loader, "contract_absent") == 3

    def test_load_modes_create_and_replace(self, loader: ComputePlugin) -> None:
        sample = self.load_sample()
        loader.load_arrow("contract_modes", sample, mode="create")
        with pytest.raises(ConfigError, match="exists"):
            loader.load_arrow("contract_modes", sample, mode="create")
        loader.load_arrow("contract_modes", sample.slice(0, 1), mode="replace")
        assert self._count(loader, "contract_modes") == 1
        with pytest.raises(ConfigError, match="mode"):
            loader.load_arrow("contract_modes", sample, mode="upsert")

    def test_a_value_the_engine_refuses_fails_the_whole_load(self, loader: ComputePlugin) -> None:
        import pyarrow as pa

        loader.execute("CREATE TABLE contract_refused (id INTEGER)").close()
        loader.execute("INSERT INTO contract_refused VALUES (7)").close()
        good = pa.record_batch({"id": pa.array(["1", "2"])})
        bad = pa.record_batch({"id": pa.array(["3", "not-a-number-5150"])})
        with pytest.raises(QueryError) as caught:
            loader.load_arrow("contract_refused", [good, bad])
        assert re.search(r"\bid\b", str(caught.value), re.IGNORECASE), "the error does not name the column"
        assert "5150" not in str(caught.value), "the refused value reached the error message"
        if self.loads_atomically:
            assert self._count(loader, "contract_refused") == 1, "a failed load left rows behind"
        else:  # what is documented as left behind: whole batches sent before the failing one
            assert self._count(loader, "contract_refused") in (1, 3), "a failed load left part of a batch"
        assert loader.pool_stats().in_use == 0

    def test_the_deadline_stops_a_load_and_rolls_it_back(self, loader: ComputePlugin) -> None:
        loader.execute("CREATE TABLE contract_slow_load (id BIGINT)").close()
        with pytest.raises(QueryTimeoutError):
            loader.load_arrow("contract_slow_load", self._endless(), timeout=1.0)
        if self.loads_atomically:
            assert self._count(loader, "contract_slow_load") == 0
        assert loader.pool_stats().in_use == 0

    def test_a_batch_of_another_schema_fails_the_load(self, loader: ComputePlugin) -> None:
        import pyarrow as pa

        loader.execute("CREATE TABLE contract_mixed_load (id BIGINT)").close()
        batches = [
            pa.record_batch({"id": pa.array([1], pa.int64())}),
            pa.record_batch({"id": pa.array(["2"])}),
        ]
        with pytest.raises(ConfigError, match="schema differs"):
            loader.load_arrow("contract_mixed_load", batches)
        if self.loads_atomically:
            assert self._count(loader, "contract_mixed_load") == 0

    def test_ctrl_c_midway_rolls_the_load_back(self, loader: ComputePlugin) -> None:
        import pyarrow as pa

        loader.execute("CREATE TABLE contract_interrupted_load (id BIGINT)").close()

        def interrupted() -> Iterator[Any]:
            yield pa.record_batch({"id": pa.array(range(1000), pa.int64())})
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            loader.load_arrow("contract_interrupted_load", interrupted())
        if self.loads_atomically:
            assert self._count(loader, "contract_interrupted_load") == 0
        assert loader.pool_stats().in_use == 0 and loader.running_queries() == []

    def test_cancel_query_stops_a_listed_load(self, loader: ComputePlugin) -> None:
        loader.execute("CREATE TABLE contract_cancel_load (id BIGINT)").close()
        outcome = run_in_thread(
            lambda: loader.load_arrow(
                "contract_cancel_load", self._endless(), query_id="load-1", tags={"job": "x"}
            )
        )
        listed = wait_until_listed(loader, "load-1")
        assert "contract_cancel_load" in listed.summary and listed.tags == {"job": "x"}
        assert loader.cancel_query("load-1")
        assert isinstance(outcome.join().error, QueryCancelledError)
        if self.loads_atomically:
            assert self._count(loader, "contract_cancel_load") == 0
        assert loader.pool_stats().in_use == 0

    def test_a_cancelled_task_stops_its_load(self, loader: ComputePlugin) -> None:
        loader.execute("CREATE TABLE contract_task_load (id BIGINT)").close()

        async def main() -> None:
            done = await loader.aload_arrow("contract_task_load", self.load_sample().select(["id"]))
            assert done.rows == 3
            task = asyncio.create_task(
                loader.aload_arrow("contract_task_load", self._endless(), query_id="load-2")
            )
            await asyncio.to_thread(wait_until_listed, loader, "load-2")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        wait_until_unlisted(loader, "load-2")
        if self.loads_atomically:
            assert self._count(loader, "contract_task_load") == 3
