"""One plugin's worker threads for the asyncio face: the driver's blocking calls run there."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from _thread import allocate_lock
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

__all__ = ["Job", "Workers"]

T = TypeVar("T")


class Workers:
    """One plugin's worker threads, made on first use: ``execute`` ones (which may wait for a
    connection) and ``fetch`` ones for results that hold a connection, each as many as the pool
    has connections, so that queries waiting for a connection never stand in the way of the reads
    that would give one back.

    Not a ``ThreadPoolExecutor``: its ``submit()`` (a lock, a semaphore made of a ``Condition``, a
    work item, a ``Future`` whose every step takes a ``Condition`` written in Python) cost about as
    much as the rest of a short query's hop to a thread and back. A call here is a :class:`Job` on
    a queue; :meth:`submit` gives it a ``Future`` for callers that want one.
    """

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._lock = threading.Lock()
        self._kinds: dict[str, _Threads] = {}

    def start(self, kind: str, call: Callable[..., T], *args: Any) -> Job[T]:
        """Start a blocking call on the ``kind`` threads, in the caller's ``contextvars`` context."""
        threads = self._kinds.get(kind)
        if threads is None:
            with self._lock:
                threads = self._kinds.get(kind)
                if threads is None:
                    threads = self._kinds[kind] = _Threads(f"floe-compute-{self._name}-{kind}", self._size)
        job: Job[T] = Job(contextvars.copy_context().run, call, args)
        threads.put(job)
        return job

    def submit(self, kind: str, call: Callable[..., T], *args: Any) -> Future[T]:
        """:meth:`start`, as a ``Future``."""
        return self.start(kind, call, *args).future()

    def shutdown(self) -> None:
        """Let the threads end once their calls have (a new call starts new ones)."""
        with self._lock:
            kinds, self._kinds = self._kinds, {}
        for threads in kinds.values():
            threads.end()


_QUEUED, _RUNNING, _DONE, _CANCELLED = range(4)


class Job(Generic[T]):
    """A call queued for a worker thread: a C lock and a state. :meth:`future` makes a
    ``concurrent.futures.Future`` of it for a caller that waits on the call itself (a cancelled
    task); cancelling either cancels the call while it is queued."""

    __slots__ = ("_args", "_call", "_error", "_future", "_lock", "_run", "_state", "_value")

    def __init__(self, run: Callable[..., Any], call: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._run = run
        self._call = call
        self._args = args
        self._lock = allocate_lock()
        self._state = _QUEUED
        self._value: T | None = None
        self._error: BaseException | None = None
        self._future: Future[T] | None = None

    def cancel(self) -> bool:
        """Cancel the call unless a thread has started it: True when it never runs."""
        with self._lock:
            if self._state == _QUEUED:
                self._state = _CANCELLED
            cancelled = self._state == _CANCELLED
            future = self._future
        if cancelled and future is not None:
            future.cancel()  # outside the lock: the Future calls back _cancelled_future
        return cancelled

    def done(self) -> bool:
        return self._state >= _DONE

    def future(self) -> Future[T]:
        """A ``Future`` of the call's outcome, settled when the call ends (at once if it has)."""
        with self._lock:
            if self._future is None:
                future: Future[T] = Future()
                if self._state == _QUEUED:  # cancelling the Future cancels the call, as an executor's
                    future.add_done_callback(self._cancelled_future)
                elif self._state == _CANCELLED:
                    future.cancel()
                else:
                    future.set_running_or_notify_cancel()
                    if self._state == _DONE:
                        _settle(future, self._value, self._error)
                self._future = future
            return self._future

    def _cancelled_future(self, future: Future[T]) -> None:
        if future.cancelled():
            self.cancel()

    def run(self) -> None:
        """On a worker thread: the call, unless cancelled first."""
        with self._lock:
            if self._state != _QUEUED:
                return
            self._state = _RUNNING
            future = self._future
        if future is not None and not future.set_running_or_notify_cancel():
            with self._lock:
                self._state = _CANCELLED  # its Future was cancelled just now
            return
        value: T | None = None
        error: BaseException | None = None
        try:
            value = self._run(self._call, *self._args)
        except BaseException as exc:
            error = exc
        with self._lock:
            self._state = _DONE
            self._value, self._error = value, error
            future = self._future
            self._run = self._call = self._args = None  # type: ignore[assignment]
        if future is not None:
            _settle(future, value, error)


def _settle(future: Future[Any], value: Any, error: BaseException | None) -> None:
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


class _Threads:
    """The threads of one kind: a call takes an idle one, or starts one while fewer than ``size``
    run (a ``ThreadPoolExecutor``'s rule: a thread is idle again when it has run a call)."""

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._jobs: queue.SimpleQueue[Job[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0

    def put(self, job: Job[Any]) -> None:
        self._jobs.put(job)
        with self._lock:
            if self._idle:
                self._idle -= 1  # this one takes it
            elif self._started < self._size:
                name = f"{self._name}_{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
                self._started += 1

    def end(self) -> None:
        with self._lock:
            started = self._started
        for _ in range(started):
            self._jobs.put(None)

    def _work(self) -> None:
        """Run the queued jobs until told to end (``None``)."""
        while (job := self._jobs.get()) is not None:
            job.run()
            del job  # nothing of a finished call stays alive meanwhile
            with self._lock:
                self._idle += 1


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
