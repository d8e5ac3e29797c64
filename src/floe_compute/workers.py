"""One plugin's worker threads for the asyncio face: the driver's blocking calls run there."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["Workers"]

T = TypeVar("T")


class Workers:
    """One plugin's worker threads, made on first use: ``execute`` ones (which may wait for a
    connection) and ``fetch`` ones for results that hold a connection, each as many as the pool
    has connections, so that queries waiting for a connection never stand in the way of the reads
    that would give one back."""

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._lock = threading.Lock()
        self._executors: dict[str, ThreadPoolExecutor] = {}

    def submit(self, kind: str, call: Callable[..., T], *args: Any) -> Future[T]:
        """Start a blocking call on the ``kind`` threads, in the caller's ``contextvars`` context."""
        executor = self._executors.get(kind)
        if executor is None:
            from concurrent.futures import ThreadPoolExecutor  # only asyncio users pay for it

            with self._lock:
                executor = self._executors.get(kind)
                if executor is None:
                    executor = self._executors[kind] = ThreadPoolExecutor(
                        max_workers=self._size, thread_name_prefix=f"floe-compute-{self._name}-{kind}"
                    )
        return executor.submit(contextvars.copy_context().run, call, *args)

    def shutdown(self) -> None:
        """Let the threads end once their calls have (a new call starts new ones)."""
        with self._lock:
            executors, self._executors = self._executors, {}
        for executor in executors.values():
            executor.shutdown(wait=False)


async def wait_briefly(future: Future[Any], seconds: float) -> None:
    """Wait up to ``seconds`` for a worker's call to end, through further cancels of the waiting
    task. Its outcome is nobody's once the time is up: retrieved here, so that asyncio never logs
    "Future exception was never retrieved" for a query that was stopped as asked."""
    import asyncio  # the asyncio face's own: a blocking caller never imports it

    waiting = asyncio.wrap_future(future)
    waiting.add_done_callback(_outcome_retrieved)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait([waiting], timeout=seconds)


def _outcome_retrieved(waiting: Any) -> None:
    if not waiting.cancelled():
        waiting.exception()
