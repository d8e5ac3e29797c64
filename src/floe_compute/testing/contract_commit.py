"""The contract on commits: a statement's changes are committed only when its caller is done with
it (``close()``, or a ``with`` block left without an exception), never because its rows were read,
and never for a caller that abandoned it (an exception, a cancelled task, a dropped result)."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from floe_compute import ComputePlugin
from floe_compute.aio import AsyncQueryResult
from floe_compute.testing.threads import wait_until_unlisted

Factory = Callable[..., ComputePlugin]

__all__ = ["CommitContract"]


class CommitContract:
    """Mixed into :class:`~floe_compute.testing.ComputePluginContract`."""

    commits_each_statement: bool
    #: Whether the engine has a data change that returns rows (``INSERT ... RETURNING``, see
    #: :meth:`insert_returning`); engines without one check the rules on writes without rows only.
    writes_return_rows = True

    def insert_returning(self, table: str) -> str:
        """Insert the rows 1 and 2 into ``table`` (one INTEGER column ``id``), returning their ids."""
        return f"INSERT INTO {table} VALUES (1), (2) RETURNING id"

    def _writes(self, plugin: ComputePlugin, table: str) -> list[str]:
        """A new table, and the writes into it the engine has: without rows, and with rows."""
        plugin.execute(f"CREATE TABLE {table} (id INTEGER)").close()
        writes = [f"INSERT INTO {table} VALUES (1)"]
        if self.writes_return_rows:
            writes.append(self.insert_returning(table))
        return writes

    def _assert_nothing_committed(self, plugin: ComputePlugin, table: str) -> None:
        assert plugin.pool_stats().in_use == 0
        with plugin.execute(f"SELECT count(*) FROM {table}") as result:
            count = result.fetchall()[0][0]
        if not self.commits_each_statement:
            assert count == 0, f"{count} rows of an abandoned write were committed"

    def test_a_write_read_to_its_end_is_rolled_back_by_a_failing_block(self, plugin: ComputePlugin) -> None:
        """Reading a write's result to its end commits nothing: the block may still fail."""
        for write in self._writes(plugin, "contract_read_write"):
            with pytest.raises(RuntimeError, match="caller failed"), plugin.execute(write) as result:
                result.fetchall()
                assert result.fetchall() == []
                raise RuntimeError("caller failed")
        self._assert_nothing_committed(plugin, "contract_read_write")

    def test_a_write_read_to_its_end_is_committed_when_its_block_ends(self, plugin: ComputePlugin) -> None:
        """A read gives its connection back as soon as it is exhausted; a write keeps it (with its
        transaction) until it is closed, and is committed then."""
        with plugin.execute("SELECT 1") as result:
            assert result.fetchall() == [(1,)]
            assert plugin.pool_stats().in_use == 0, "a read kept its connection once exhausted"
        expected = 0
        for write in self._writes(plugin, "contract_write_ends"):
            with plugin.execute(write) as result:
                expected += len(result.fetchall()) or 1
                assert plugin.pool_stats().in_use == 1, "a write let go of its transaction when read"
            assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT count(*) FROM contract_write_ends") as result:
            assert result.fetchall() == [(expected,)]

    def test_a_dropped_write_read_to_its_end_is_rolled_back(self, plugin: ComputePlugin) -> None:
        for write in self._writes(plugin, "contract_dropped_read"):
            result = plugin.execute(write)
            result.fetchall()
            with pytest.warns(ResourceWarning, match="rolled back"):
                del result
                gc.collect()
        self._assert_nothing_committed(plugin, "contract_dropped_read")

    def test_async_a_write_read_to_its_end_is_rolled_back_by_a_failing_block(
        self, plugin: ComputePlugin
    ) -> None:
        writes = self._writes(plugin, "contract_async_read_write")

        async def main() -> None:
            for write in writes:
                with pytest.raises(RuntimeError, match="caller failed"):
                    async with plugin.aexecute(write) as result:
                        await result.fetchall()
                        raise RuntimeError("caller failed")

        asyncio.run(main())
        self._assert_nothing_committed(plugin, "contract_async_read_write")

    def test_a_task_cancelled_after_its_write_finished_commits_nothing(self, plugin: ComputePlugin) -> None:
        """``asyncio.wait_for`` and ``asyncio.timeout()`` cancel a task that may not have resumed
        since the worker thread finished its statement: the task ends with ``CancelledError``, so
        the write is rolled back."""
        plugin.execute("CREATE TABLE contract_cancelled_write (id INTEGER)").close()
        insert = "INSERT INTO contract_cancelled_write VALUES (1)"
        ran = threading.Event()

        def after_cursor_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "INTO contract_cancelled_write" in statement:
                ran.set()

        sa.event.listen(plugin.engine, "after_cursor_execute", after_cursor_execute)

        async def run() -> AsyncQueryResult:
            return await plugin.aexecute(insert, query_id="contract-late-write")

        async def main() -> None:
            task = asyncio.create_task(run())
            await asyncio.sleep(0)  # the task has handed the statement to a worker thread
            # the loop is blocked until the INSERT has finished on the engine: the task cannot
            # resume before it is cancelled
            assert ran.wait(30), "the INSERT never ran"
            wait_until_unlisted(plugin, "contract-late-write")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        self._assert_nothing_committed(plugin, "contract_cancelled_write")

    def test_a_task_cancelled_while_reading_a_write_commits_nothing(self, plugin: ComputePlugin) -> None:
        writes = self._writes(plugin, "contract_cancelled_read")

        async def main() -> None:
            for write in writes:
                result = await plugin.aexecute(write)
                task = asyncio.create_task(result.fetchall())
                await asyncio.sleep(0)  # the read is on a worker thread
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert result.closed

        asyncio.run(main())
        self._assert_nothing_committed(plugin, "contract_cancelled_read")
