"""The watchdog: one daemon thread that cancels queries on the engine when their deadline passes.

A :class:`QueryHandle` is the only thing shared between the thread running a query and the watchdog
(or another thread calling ``cancel_query()``). Its lock makes "cancel on the engine" and "give the
connection back to the pool" mutually exclusive, so a cancel can never reach a connection that is
already running somebody else's query.

A cancel may arrive before the statement has reached the engine (while the query waits for a
connection, or between the last check and the driver call). Engines such as DuckDB ignore an
interrupt that finds nothing running, so the watchdog repeats the engine cancel, with a growing
interval, until the query's own thread reports that it has ended (for at most ``RESEND_FOR_S``).

Engine cancels are network calls on most engines: the watchdog hands them to a thread of their own,
so one slow cancel never holds up another query's deadline.
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

RESEND_INTERVALS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Seconds between repeated engine cancels of a stopped query that has not ended yet."""
LOCK_WAIT_S = 0.05
"""How long the watchdog waits for a query's lock before it comes back to that query later."""
RESEND_FOR_S = 30.0
"""How long after the stop the cancel is repeated: a statement that could still have started after
the first cancel has started by then, and a stopped result nobody reads needs no more cancels."""


class QueryState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class QueryHandle:
    """A running query as the watchdog sees it: its deadline and how to cancel it on the engine."""

    __slots__ = (
        "_cancel",
        "_ended",
        "_ended_event",
        "_lock",
        "_sending",
        "_stopped_at",
        "cancel_error",
        "cancel_sent",
        "deadline",
        "query_id",
        "started",
        "state",
        "stopped",
        "timeout",
    )

    def __init__(self, query_id: str, timeout: float | None, cancel: Callable[[], bool] | None) -> None:
        self.query_id = query_id
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.state = QueryState.RUNNING
        self.stopped = False
        """Timed out or cancelled: the statement must not start, or must stop (read on every
        step of a query: an attribute, set with the state)."""
        self.cancel_sent = False
        """Whether an engine cancel has been sent to a statement the engine was running (False:
        the query was stopped before it ran there, or when the engine had nothing left to stop)."""
        self.cancel_error: BaseException | None = None
        self._cancel = cancel
        self._ended = False
        self._ended_event: threading.Event | None = None
        self._lock = threading.Lock()
        self._sending = False  # an engine cancel is on its way (at most one per query at a time)
        self._stopped_at: float | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def bind(self, cancel: Callable[[], bool]) -> None:
        """Set how to cancel on the engine, once the query has a connection."""
        with self._lock:
            self._cancel = cancel

    def _send(self) -> None:
        """Cancel on the engine; the caller holds the lock."""
        if self._cancel is None or self._ended:
            return
        sent_before = self.cancel_sent
        # set first: the query's thread may see the engine's answer to it before _cancel() returns
        self.cancel_sent = True
        sent = False
        try:
            sent = self._cancel() is True  # False: the engine had nothing to stop
            self.cancel_error = None
        except Exception as exc:  # the query may have just finished; nothing left to cancel
            self.cancel_error = exc
            log.debug("cancel of query %s failed", self.query_id, exc_info=True)
        finally:
            self.cancel_sent = sent_before or sent

    def _stop(self, state: QueryState, *, lock_wait: float = -1, background: bool = False) -> bool | None:
        """The one state change of a stop: move a running query to ``state`` and cancel it on the
        engine, here or (``background``) from a thread of its own. False if the query was no
        longer running; None if its lock stayed busy for ``lock_wait`` seconds."""
        if not self._lock.acquire(timeout=lock_wait):
            return None
        try:
            if self.state is not QueryState.RUNNING:
                return False
            self.state = state
            self.stopped = True
            self._stopped_at = time.monotonic()
            if not background:
                self._send()
        finally:
            self._lock.release()
        if background:
            self._send_in_background()
        watchdog.resend(self, 0)
        return True

    def _send_in_background(self) -> None:
        """Cancel on the engine from a thread of its own, unless a cancel is already on its way.
        Only the watchdog thread calls this: it never waits for an engine."""
        if self._ended or self._sending or self._cancel is None:
            return  # ended, a cancel on its way, or no connection yet (a later repeat sends it)
        self._sending = True

        def send() -> None:
            try:
                with self._lock:
                    self._send()
            finally:
                self._sending = False

        threading.Thread(target=send, name=f"floe-compute-cancel-{self.query_id}", daemon=True).start()

    def resend(self) -> bool:
        """Repeat the engine cancel (in the background); False once the query has ended or the
        cancel has been repeated for ``RESEND_FOR_S``."""
        if self._ended:
            return False
        if self._stopped_at is not None and time.monotonic() - self._stopped_at > RESEND_FOR_S:
            return False
        self._send_in_background()
        return True

    def expire(self) -> bool | None:
        """The deadline passed: mark it, and cancel on the engine in the background, so that the
        watchdog goes on to the next deadline. False if the query had already ended; None if its
        lock is busy (a cancel or the query's end in progress): the watchdog tries again shortly."""
        return self._stop(QueryState.TIMED_OUT, lock_wait=LOCK_WAIT_S, background=True)

    def cancel(self) -> bool:
        """Cancel on the engine at the caller's request. False if the query had already ended."""
        return self._stop(QueryState.CANCELLED) is True

    def settle(self) -> QueryState:
        """The statement has done all its work on the engine (it returns no rows): its deadline
        and cancels no longer apply, although its transaction waits for the result's close."""
        with self._lock:
            if self.state is QueryState.RUNNING:
                self.state = QueryState.DONE
                self._cancel = None
            return self.state

    def finish(self) -> QueryState:
        """The query ended (its connection is about to go back): no cancel may reach it now."""
        with self._lock:
            if self.state is QueryState.RUNNING:
                self.state = QueryState.DONE
            self._cancel = None
            self._ended = True
            if self._ended_event is not None:
                self._ended_event.set()
            return self.state

    def wait_ended(self, timeout: float) -> bool:
        """Wait until the query's thread has ended it (given its connection back)."""
        with self._lock:
            if self._ended:
                return True
            if self._ended_event is None:
                self._ended_event = threading.Event()
            event = self._ended_event
        return event.wait(timeout)


class Watchdog:
    """Expires handles at their deadline, from a single lazily started daemon thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, QueryHandle, int]] = []
        self._seq = itertools.count()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._compact_at = 1024

    def watch(self, handle: QueryHandle) -> None:
        if handle.deadline is not None:
            self._push(handle.deadline, handle, -1)

    def resend(self, handle: QueryHandle, attempt: int) -> None:
        """Schedule the ``attempt``-th repeat of a stopped query's engine cancel."""
        interval = RESEND_INTERVALS[min(attempt, len(RESEND_INTERVALS) - 1)]
        self._push(time.monotonic() + interval, handle, attempt)

    def _push(self, when: float, handle: QueryHandle, attempt: int) -> None:
        with self._wakeup:
            if len(self._heap) >= self._compact_at:
                # finished queries with far deadlines would otherwise pile up until they expire
                self._heap = [entry for entry in self._heap if not entry[2]._ended]
                heapq.heapify(self._heap)
                self._compact_at = max(1024, 2 * len(self._heap))
            heapq.heappush(self._heap, (when, next(self._seq), handle, attempt))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="floe-compute-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    head = self._heap[0] if self._heap else None
                    if head is not None and head[3] < 0 and head[2].state is not QueryState.RUNNING:
                        heapq.heappop(self._heap)  # a deadline of a query that already ended
                        continue
                    wait = head[0] - time.monotonic() if head is not None else None
                    # a far deadline is waited for in steps: a single wait would overflow
                    self._wakeup.wait(None if wait is None else min(wait, _MAX_WAIT))
                _, _, handle, attempt = heapq.heappop(self._heap)
            try:
                if attempt < 0:
                    if handle.expire() is None:
                        self._push(time.monotonic() + LOCK_WAIT_S, handle, -1)
                elif handle.resend():
                    self.resend(handle, attempt + 1)
            except Exception:  # the thread must outlive any engine's cancel hook
                log.exception("watchdog: stopping query %s failed", handle.query_id)


watchdog = Watchdog()
