"""One plugin's worker threads for the asyncio face: the driver's blocking calls run there."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Workers"]

T = TypeVar("T")


class Workers:
    """One plugin's worker threads, made on first use: ``execute`` ones (which may wait for a
    connection) and ``fetch`` ones for results that hold a connection, each as many as the pool
    has connections, so that queries waiting for a connection never stand in the way of the reads
    that would give one back.

    Not a ``ThreadPoolExecutor``: its ``submit()`` (a lock, a semaphore made of a ``Condition``, a
    work item) cost about as much as the rest of a short query's hop to a thread and back. Here a
    call is a ``Future`` and a queue entry.
    """

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._lock = threading.Lock()
        self._kinds: dict[str, _Threads] = {}

    def submit(self, kind: str, call: Callable[..., T], *args: Any) -> Future[T]:
        """Start a blocking call on the ``kind`` threads, in the caller's ``contextvars`` context."""
        threads = self._kinds.get(kind)
        if threads is None:
            with self._lock:
                threads = self._kinds.get(kind)
                if threads is None:
                    threads = self._kinds[kind] = _Threads(f"floe-compute-{self._name}-{kind}", self._size)
        future: Future[T] = Future()
        threads.put((future, contextvars.copy_context().run, call, args))
        return future

    def shutdown(self) -> None:
        """Let the threads end once their calls have (a new call starts new ones)."""
        with self._lock:
            kinds, self._kinds = self._kinds, {}
        for threads in kinds.values():
            threads.end()


_Call = tuple["Future[Any]", Callable[..., Any], Callable[..., Any], tuple[Any, ...]]


class _Threads:
    """The threads of one kind: a new one when a call finds none idle, up to ``size``."""

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0

    def put(self, item: _Call) -> None:
        self._calls.put(item)
        if self._idle == 0 and self._started < self._size:  # read unlocked: checked again below
            with self._lock:
                if self._idle == 0 and self._started < self._size:
                    name = f"{self._name}_{self._started}"
                    threading.Thread(target=self._work, name=name, daemon=True).start()
                    self._started += 1

    def end(self) -> None:
        with self._lock:
            started = self._started
        for _ in range(started):
            self._calls.put(None)

    def _work(self) -> None:
        """Run the queued calls until told to end (``None``)."""
        lock = self._lock
        while True:
            with lock:
                self._idle += 1
            item = self._calls.get()
            with lock:
                self._idle -= 1
            if item is None:
                return
            future, run, call, args = item
            del item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued: it never runs
            try:
                value = run(call, *args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(value)
                del value
            del future, run, call, args  # nothing of a finished call stays alive meanwhile


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
