"""Pool statistics, counted from SQLAlchemy pool events.

Counters move in event handlers under one lock, so they stay exact under any concurrency. Checkout
waiting and give-ups are not pool events: the plugin reports them around its own checkouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool, QueuePool

__all__ = ["PoolStats", "PoolTracker"]


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of one plugin's connection pool."""

    size: int
    """Connections the pool keeps open."""
    max: int
    """Most connections the pool will open at once (size + overflow)."""
    idle: int
    in_use: int
    overflow: int
    waiting: int
    """Callers blocked waiting for a connection right now."""
    checkouts: int
    connects: int
    disconnects: int
    invalidations: int
    """Connections discarded as broken: invalidated after an error or a failed pre-ping, recycled
    because the pool was invalidated as a whole, or disposed by the health monitor after a failure."""
    reconnects: int
    """Connections opened to replace the discarded ones."""
    timeouts: int
    """Checkouts that gave up after ``pool.timeout``."""
    wait_time_total_ms: float
    wait_time_max_ms: float

    @property
    def saturated(self) -> bool:
        """Every connection is in use and callers are queueing."""
        return self.in_use >= self.max and self.waiting > 0


Listener = Callable[[str, float], None]


class PoolTracker:
    """Listens to one pool's events and keeps its counters."""

    def __init__(self, pool: Pool, max_connections: int) -> None:
        self._pool = pool
        self._max = max_connections
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiting = 0
        self._checkouts = 0
        self._connects = 0
        self._disconnects = 0
        self._invalidations = 0
        self._pending_replacements = 0
        self._reconnects = 0
        self._timeouts = 0
        self._wait_total = 0.0
        self._wait_max = 0.0
        self._checked_out_at: dict[int, float] = {}
        self._connecting = threading.local()
        self._hard_invalidated: set[int] = set()
        self._discarding = threading.local()
        self.listeners: list[Listener] = []
        """Called as ``listener(event_name, seconds)`` for create, wait and use times."""
        for name in ("connect", "checkout", "checkin", "close", "close_detached", "invalidate"):
            event.listen(pool, name, getattr(self, f"_on_{name}"))

    def remove(self) -> None:
        for name in ("connect", "checkout", "checkin", "close", "close_detached", "invalidate"):
            event.remove(self._pool, name, getattr(self, f"_on_{name}"))

    def _emit(self, name: str, seconds: float) -> None:
        for listener in self.listeners:  # the callers skip the call when there is none
            listener(name, seconds)

    def connect_started(self) -> None:
        """Marks the start of a DBAPI connect on this thread, to time it in the connect event."""
        self._connecting.started = time.perf_counter()

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            self._connects += 1
            if self._pending_replacements:
                self._pending_replacements -= 1
                self._reconnects += 1
        started = getattr(self._connecting, "started", None)
        if started is not None:
            self._connecting.started = None
            self._emit("create", time.perf_counter() - started)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        with self._lock:
            self._checkouts += 1
            self._in_use += 1
            self._checked_out_at[id(record)] = time.perf_counter()

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            started = self._checked_out_at.pop(id(record), None)
            if started is None:
                return
            self._in_use -= 1
        if self.listeners:
            self._emit("use", time.perf_counter() - started)

    def _on_close(self, dbapi_connection: Any, record: Any) -> None:
        # SQLAlchemy fires no invalidate event when it recycles a connection older than a pool-wide
        # invalidation (after the first failed pre-ping, the others are replaced silently)
        started = getattr(record, "starttime", None) or 0.0
        stale = started < getattr(self._pool, "_invalidate_time", 0.0) or started < getattr(
            record, "_soft_invalidate_time", 0.0
        )
        with self._lock:
            self._disconnects += 1
            if id(record) in self._hard_invalidated:
                self._hard_invalidated.discard(id(record))
                return
            if stale or getattr(self._discarding, "active", False):
                self._invalidations += 1
                self._pending_replacements += 1

    def _on_close_detached(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._disconnects += 1

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        with self._lock:
            self._invalidations += 1
            self._pending_replacements += 1
            self._hard_invalidated.add(id(record))  # its close event follows: counted once

    def discard_idle(self) -> None:
        """Close every idle connection after a failure, counting them as invalidations; the next
        checkouts open fresh ones (counted as reconnects)."""
        self._discarding.active = True
        try:
            self._pool.dispose()
        finally:
            self._discarding.active = False

    def start_counting(self) -> None:
        """Forget the checkouts made so far (the plugin's own connectivity probe)."""
        with self._lock:
            self._checkouts = 0
            self._wait_total = 0.0
            self._wait_max = 0.0

    def wait_started(self) -> None:
        with self._lock:
            self._waiting += 1

    def wait_ended(self, seconds: float, *, gave_up: bool) -> None:
        with self._lock:
            self._waiting -= 1
            self._wait_total += seconds
            if seconds > self._wait_max:
                self._wait_max = seconds
            if gave_up:
                self._timeouts += 1
        if self.listeners:
            self._emit("wait", seconds)

    def snapshot(self) -> PoolStats:
        pool = self._pool
        queue = pool if isinstance(pool, QueuePool) else None
        with self._lock:
            in_use = self._in_use
            return PoolStats(
                size=queue.size() if queue else self._max,
                max=self._max,
                idle=queue.checkedin() if queue else 0,
                in_use=in_use,
                overflow=max(queue.overflow(), 0) if queue else 0,
                waiting=self._waiting,
                checkouts=self._checkouts,
                connects=self._connects,
                disconnects=self._disconnects,
                invalidations=self._invalidations,
                reconnects=self._reconnects,
                timeouts=self._timeouts,
                wait_time_total_ms=self._wait_total * 1000,
                wait_time_max_ms=self._wait_max * 1000,
            )
