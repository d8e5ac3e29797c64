"""The asyncio face of a plugin: the same queries, with the driver's blocking calls on worker threads.

Each plugin has two pools of worker threads, each as large as its connection pool: one runs
``execute()`` (so a burst of coroutines queues for a connection instead of piling up threads), the
other reads results that hold a connection (so those reads, which give the connections back, never
wait behind queries that wait for one). The calls run in the awaiting task's ``contextvars``
context: the query span is a child of the caller's current span, as with the blocking API.

Cancelling the task that awaits a query (a client that went away, ``asyncio.timeout()``, a failing
``TaskGroup``) cancels the query on the engine through the same path as ``cancel_query()``, and the
task sees ``CancelledError``; nothing the query wrote is committed, also when it had just finished.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from floe_compute.result_helpers import AsyncResultHelpers
from floe_compute.workers import wait_briefly

if TYPE_CHECKING:
    from types import TracebackType

    import pyarrow as pa

    from floe_compute.result import QueryResult, Row
    from floe_compute.running import RunningQueries
    from floe_compute.workers import Job, Workers

__all__ = ["AsyncExecution", "AsyncQueryResult"]

T = TypeVar("T")

CANCEL_GRACE_S = 1.0
"""How long a cancelled task waits for its query to give the connection back before it ends."""


async def run_blocking(call: Callable[..., T], *args: Any) -> T:
    """Run a blocking call that needs no connection of the pool (a health check) on a thread."""
    return await asyncio.to_thread(call, *args)


def _hand_over(
    workers: Workers, kind: str, call: Callable[..., T], *args: Any
) -> tuple[Job[T], asyncio.Future[T]]:
    """Start a blocking call on a worker thread: its job (for a cancel) and an asyncio future
    the worker thread settles itself, in one call back to the loop (``asyncio.wrap_future`` chains
    the two through a few dozen Python calls per query, every one holding the GIL)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def run() -> T:
        try:
            result = call(*args)
        except BaseException as exc:
            _settle_from_thread(loop, waiter, None, exc)
            raise
        _settle_from_thread(loop, waiter, result, None)
        return result

    return workers.start(kind, run), waiter


def _settle_from_thread(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any], result: Any, exc: BaseException | None
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody awaits the outcome
        loop.call_soon_threadsafe(_settle, waiter, result, exc)


def _settle(waiter: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if waiter.done():  # the awaiting task was cancelled
        return
    if exc is None:
        waiter.set_result(result)
    else:
        waiter.set_exception(exc)


class AsyncExecution:
    """What ``plugin.aexecute(...)`` returns: await it for the result, or ``async with`` it."""

    def __init__(
        self,
        execute: Callable[[], QueryResult],
        query_id: str,
        *,
        workers: Workers,
        running: RunningQueries,
        on_stop: Callable[[Future[Any]], None] | None = None,
    ) -> None:
        self._call = execute
        self.query_id = query_id
        self._workers = workers
        self._running = running
        self._on_stop = on_stop
        self._result: AsyncQueryResult | None = None

    def __await__(self) -> Generator[Any, None, AsyncQueryResult]:
        return self._start().__await__()

    async def _start(self) -> AsyncQueryResult:
        job, waiter = _hand_over(self._workers, "execute", self._call)
        try:
            result = await waiter
        except asyncio.CancelledError:
            if self._on_stop is not None:  # told before the grace: it may run out first
                self._on_stop(job.future())
            await _stop(self._workers, self._running, self.query_id, job)
            raise
        return AsyncQueryResult(result, self._workers)

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


async def _stop(workers: Workers, running: RunningQueries, query_id: str, job: Job[Any]) -> None:
    """The awaiting task was cancelled: stop the query on the engine and wait (briefly, shielded
    from further cancels) until its connection is back in the pool.

    A statement that finished before the cancel reached it is rolled back: its caller gets
    ``CancelledError``, so nothing it ran may stay committed.
    """
    if job.cancel():  # still queued for a worker thread: it never ran
        return
    future = job.future()

    def abandon_late_result(done: Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result().abandon()
        running.forget_preempted(query_id)

    if future.done():  # finished while the task waited to resume: roll back on a worker thread
        waited = workers.submit("fetch", abandon_late_result, future)
    else:
        running.cancel_or_preempt(query_id)
        future.add_done_callback(abandon_late_result)
        waited = future
    await wait_briefly(waited, CANCEL_GRACE_S)


class AsyncQueryResult(AsyncResultHelpers):
    """A :class:`~floe_compute.QueryResult` for asyncio: every fetch runs on a worker thread."""

    def __init__(self, result: QueryResult, workers: Workers) -> None:
        self._result: QueryResult = result
        self._workers = workers

    @property
    def columns(self) -> list[str]:
        return self._result.columns

    @property
    def query_id(self) -> str:
        return self._result.query_id

    @property
    def rowcount(self) -> int:
        """Rows handed to the caller so far."""
        return self._result.rowcount

    @property
    def closed(self) -> bool:
        return self._result.closed

    @property
    def sync(self) -> QueryResult:
        """The blocking result underneath (for code that runs on a worker thread itself)."""
        return self._result

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        """A blocking call on a worker thread; a cancelled task cancels the query."""
        job, waiter = _hand_over(self._workers, "fetch", call, *args)
        try:
            return await waiter
        except asyncio.CancelledError:
            job.cancel()  # still queued: it never runs
            self._result.cancel()
            await wait_briefly(job.future(), CANCEL_GRACE_S)
            # rolled back: a write read to its end is not committed for a caller that went away
            await asyncio.shield(self._run_on_worker(self._result.abandon))
            raise

    async def _run_on_worker(self, call: Callable[[], None]) -> None:
        await asyncio.wrap_future(self._workers.submit("fetch", call))

    def _buffered(self) -> int:
        """Rows the result already holds: handed out without a driver call (or a thread)."""
        return self._result.buffered

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        size = size or self._result.batch_size
        if self._buffered() >= size:
            return self._result.fetchmany(size)
        return await self._run(self._result.fetchmany, size)

    async def fetchone(self) -> Row | None:
        if self._buffered():
            return self._result.fetchone()
        return await self._run(self._result.fetchone)

    async def fetchall(self) -> list[Row]:
        return await self._run(self._result.fetchall)

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
            await self._run_on_worker(self._result.close)

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
        done = self._workers.submit("fetch", self._result.__exit__, exc_type, exc, tb)
        await asyncio.shield(asyncio.wrap_future(done))

    def __repr__(self) -> str:
        return f"<Async{self._result!r}"[:-1] + ">"
