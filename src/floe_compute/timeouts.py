"""The watchdog: one daemon thread that cancels queries on the engine when their deadline passes.

A :class:`QueryHandle` is the only thing shared between the thread running a query and the watchdog
(or another thread calling ``cancel()``). Its lock makes "cancel on the engine" and "give the
connection back to the pool" mutually exclusive, so a cancel can never reach a connection that is
already running somebody else's query.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["QueryHandle", "QueryState", "Watchdog", "watchdog"]

log = logging.getLogger(__name__)

_MAX_WAIT = 3600.0


class QueryState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class QueryHandle:
    """A running query as the watchdog sees it: its deadline and how to cancel it on the engine."""

    __slots__ = ("_cancel", "_lock", "deadline", "query_id", "started", "state", "timeout")

    def __init__(self, query_id: str, timeout: float | None, cancel: Callable[[], None] | None) -> None:
        self.query_id = query_id
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.state = QueryState.RUNNING
        self._cancel = cancel
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def bind(self, cancel: Callable[[], None]) -> None:
        """Set how to cancel on the engine, once the query has a connection."""
        with self._lock:
            self._cancel = cancel

    def _stop(self, state: QueryState) -> bool:
        with self._lock:
            if self.state is not QueryState.RUNNING:
                return False
            self.state = state
            if self._cancel is not None:
                try:
                    self._cancel()
                except Exception:  # the query may have just finished; nothing left to cancel
                    log.debug("cancel of query %s failed", self.query_id, exc_info=True)
            return True

    def expire(self) -> bool:
        """The deadline passed: cancel on the engine. False if the query had already ended."""
        return self._stop(QueryState.TIMED_OUT)

    def cancel(self) -> bool:
        """Cancel on the engine at the caller's request. False if the query had already ended."""
        return self._stop(QueryState.CANCELLED)

    def finish(self) -> QueryState:
        """The query ended (its connection is about to go back): no cancel may reach it now."""
        with self._lock:
            if self.state is QueryState.RUNNING:
                self.state = QueryState.DONE
            self._cancel = None
            return self.state


class Watchdog:
    """Expires handles at their deadline, from a single lazily started daemon thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, QueryHandle]] = []
        self._seq = itertools.count()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._compact_at = 1024

    def watch(self, handle: QueryHandle) -> None:
        if handle.deadline is None:
            return
        with self._wakeup:
            if len(self._heap) >= self._compact_at:
                # finished queries with far deadlines would otherwise pile up until they expire
                self._heap = [entry for entry in self._heap if entry[2].state is QueryState.RUNNING]
                heapq.heapify(self._heap)
                self._compact_at = max(1024, 2 * len(self._heap))
            heapq.heappush(self._heap, (handle.deadline, next(self._seq), handle))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="floe-compute-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    if self._heap and self._heap[0][2].state is not QueryState.RUNNING:
                        heapq.heappop(self._heap)
                        continue
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    # a far deadline is waited for in steps: a single wait would overflow
                    self._wakeup.wait(None if wait is None else min(wait, _MAX_WAIT))
                _, _, handle = heapq.heappop(self._heap)
            try:
                handle.expire()
            except Exception:  # one failing cancel must not leave every other deadline unwatched
                log.exception("watchdog: expiring query %s failed", handle.query_id)


watchdog = Watchdog()
