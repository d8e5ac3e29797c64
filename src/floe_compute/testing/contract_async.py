"""The contract suite: the asyncio face: the same guarantees as the blocking API."""

from __future__ import annotations

import asyncio
import time

import pytest

from floe_compute import (
    ComputePlugin,
    HealthState,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
)
from floe_compute.testing.contract_base import ContractBase, Factory

__all__ = ["AsyncContract"]


class AsyncContract(ContractBase):
    """The asyncio face: the same guarantees as the blocking API."""

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
            # off the event loop: the task must go on to its first read meanwhile
            await asyncio.to_thread(self.wait_until_running_on_engine, plugin, "contract-task")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        # once the cancelled task has ended, the connection is back and the query is gone
        assert plugin.pool_stats().in_use == 0
        assert plugin.running_queries() == []
        with plugin.execute("SELECT 1", timeout=10) as result:
            assert result.fetchall() == [(1,)]
