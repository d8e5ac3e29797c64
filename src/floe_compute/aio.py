"""The asyncio face of a plugin: the same queries, with the driver's blocking calls on worker threads.

Each plugin has one pool of worker threads, as large as its connection pool, so a burst of
coroutines queues for a connection instead of piling up threads. Cancelling the task that awaits a
query (a client that went away, ``asyncio.timeout()``, a failing ``TaskGroup``) cancels the query on
the engine through the same path as ``cancel_query()``, and the task sees ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from types import TracebackType

    import pyarrow as pa
    from sqlalchemy.sql.base import Executable

    from floe_compute.plugin import ComputePlugin
    from floe_compute.result import QueryResult, Row

__all__ = ["AsyncExecution", "AsyncQueryResult"]

T = TypeVar("T")

CANCEL_GRACE_S = 1.0
"""How long a cancelled task waits for its query to give the connection back before it ends."""


async def run_blocking(plugin: ComputePlugin, call: Callable[..., T], *args: Any) -> T:
    """Run a blocking call on the plugin's worker threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(plugin._worker_pool(), functools.partial(call, *args))


class AsyncExecution:
    """What ``plugin.aexecute(...)`` returns: await it for the result, or ``async with`` it."""

    def __init__(
        self,
        plugin: ComputePlugin,
        sql: str | Executable,
        params: Mapping[str, Any] | None,
        *,
        timeout: float | None,
        batch_size: int | None,
        query_id: str,
        tags: Mapping[str, str] | None,
        arrow: bool = False,
    ) -> None:
        self._plugin = plugin
        self._call = functools.partial(
            plugin.execute,
            sql,
            dict(params) if params else None,
            timeout=timeout,
            batch_size=batch_size,
            query_id=query_id,
            tags=tags,
            arrow=arrow,
        )
        self.query_id = query_id
        self._result: AsyncQueryResult | None = None

    def __await__(self) -> Generator[Any, None, AsyncQueryResult]:
        return self._start().__await__()

    async def _start(self) -> AsyncQueryResult:
        plugin = self._plugin
        future: Future[QueryResult] = plugin._worker_pool().submit(self._call)
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            await _stop(plugin, self.query_id, future)
            raise
        return AsyncQueryResult(result)

    async def __aenter__(self) -> AsyncQueryResult:
        self._result = await self._start()
        return self._result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._result is not None:
            await self._result.__aexit__(exc_type, exc, tb)


async def _stop(plugin: ComputePlugin, query_id: str, future: Future[Any]) -> None:
    """The awaiting task was cancelled: stop the query on the engine and wait (briefly, shielded
    from further cancels) until its connection is back in the pool."""
    if future.cancel():  # still queued for a worker thread: it never ran
        return
    plugin._cancel_or_preempt(query_id)

    def close_late_result(done: Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result().close()  # finished before the cancel reached it
        plugin._forget_preempted(query_id)

    future.add_done_callback(close_late_result)
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), CANCEL_GRACE_S)


class AsyncQueryResult:
    """A :class:`~floe_compute.QueryResult` for asyncio: every fetch runs on a worker thread."""

    def __init__(self, result: QueryResult) -> None:
        self._result = result
        self._rows: list[Row] = []
        self._pos = 0

    @property
    def columns(self) -> list[str]:
        return self._result.columns

    @property
    def query_id(self) -> str:
        return self._result.query_id

    @property
    def rowcount(self) -> int:
        """Rows handed to the caller so far."""
        return self._result.rowcount - (len(self._rows) - self._pos)

    @property
    def closed(self) -> bool:
        return self._result.closed

    @property
    def sync(self) -> QueryResult:
        """The blocking result underneath (for code that runs on a worker thread itself)."""
        return self._result

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        """A blocking call on a worker thread; a cancelled task cancels the query."""
        future = self._result._plugin._worker_pool().submit(call, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._result.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), CANCEL_GRACE_S)
            await asyncio.shield(self._run_close())
            raise

    async def _run_close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._result._plugin._worker_pool(), self._result.close)

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        size = size or self._result._batch_size
        rows = self._rows[self._pos : self._pos + size]
        self._pos += len(rows)
        if len(rows) < size:
            rows.extend(await self._run(self._result.fetchmany, size - len(rows)))
        return rows

    async def fetchone(self) -> Row | None:
        if self._pos >= len(self._rows):
            self._rows = await self._run(self._result.fetchmany, None)
            self._pos = 0
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    async def fetchall(self) -> list[Row]:
        rows = self._rows[self._pos :]
        self._rows, self._pos = [], 0
        rows.extend(await self._run(self._result.fetchall))
        return rows

    def __aiter__(self) -> AsyncIterator[Row]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Row]:
        while True:
            row = await self.fetchone()
            if row is None:
                return
            yield row

    async def arrow_batches(self, batch_size: int | None = None) -> AsyncIterator[pa.RecordBatch]:
        """``async for batch in result.arrow_batches(n)``: record batches, one fetch per batch."""
        reader = await self._run(self._result.arrow_batches, batch_size)
        batches = iter(reader)
        while True:
            batch = await self._run(next, batches, None)
            if batch is None:
                return
            yield batch

    async def to_arrow(self) -> pa.Table:
        return await self._run(self._result.to_arrow)

    def cancel(self) -> None:
        """Stop the query on the engine (from any thread or task)."""
        self._result.cancel()

    async def close(self) -> None:
        if not self._result.closed:
            await self._run_close()

    async def __aenter__(self) -> AsyncQueryResult:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._result.closed:
            return
        loop = asyncio.get_running_loop()
        worker = self._result._plugin._worker_pool()
        await asyncio.shield(loop.run_in_executor(worker, self._result.__exit__, exc_type, exc, tb))

    def __repr__(self) -> str:
        return f"<Async{self._result!r}"[:-1] + ">"
