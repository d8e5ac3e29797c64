"""Health: the status a check returns, and an optional background monitor."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from floe_compute.errors import ComputeError, PoolExhaustedError, QueryTimeoutError
from floe_compute.pool import PoolStats

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["HealthMonitor", "HealthState", "HealthStatus"]

log = logging.getLogger("floe_compute.health")


class HealthState(str, enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class HealthStatus:
    """The result of one health check."""

    status: HealthState
    latency_ms: float
    message: str
    checked_at: datetime
    pool: PoolStats | None

    @property
    def healthy(self) -> bool:
        return self.status is HealthState.HEALTHY


class Checked(Protocol):
    """What the monitor checks: a plugin, as far as its health goes."""

    @property
    def name(self) -> str: ...
    @property
    def pool_name(self) -> str: ...
    def health_check(self, timeout: float | None = None) -> HealthStatus: ...
    async def ahealth_check(self, timeout: float | None = None) -> HealthStatus: ...
    def discard_idle_connections(self) -> None: ...


def check(
    ping: Callable[[float], None],
    pool: Callable[[], PoolStats | None],
    *,
    timeout: float,
    slow_ping_ms: float,
    scrub: Callable[[str], str],
) -> HealthStatus:
    """Ping through the pool and grade the answer; never raises.

    A saturated pool is ``degraded`` at once: queueing the ping behind users would only time
    the queue.
    """
    started = time.perf_counter()
    state, message = HealthState.HEALTHY, "ok"
    before = pool()
    busy = before if before is not None and before.in_use >= before.max else None
    if busy is None:
        try:
            ping(timeout)
        except PoolExhaustedError:
            busy = pool()
        except QueryTimeoutError as exc:  # the pool filled up meanwhile, or the engine is stuck
            stats = pool()
            if stats is not None and stats.in_use >= stats.max:
                busy = stats
            else:
                state, message = HealthState.UNHEALTHY, str(exc)
        except Exception as exc:
            state = HealthState.UNHEALTHY
            message = str(exc) if isinstance(exc, ComputeError) else scrub(repr(exc))
    latency_ms = (time.perf_counter() - started) * 1000
    after = pool()
    if busy is None and after is not None and after.saturated:
        busy = after
    if state is HealthState.HEALTHY and busy is not None:
        state = HealthState.DEGRADED
        message = f"pool saturated: {busy.in_use}/{busy.max} in use, {busy.waiting} waiting"
    elif state is HealthState.HEALTHY and latency_ms > slow_ping_ms:
        state = HealthState.DEGRADED
        message = f"ping took {latency_ms:.0f} ms (threshold {slow_ping_ms:g} ms)"
    return HealthStatus(
        status=state,
        latency_ms=latency_ms,
        message=message,
        checked_at=datetime.now(timezone.utc),
        pool=after,
    )


class HealthMonitor:
    """Checks a plugin's health on an interval, logs each state change once, and after a failure
    disposes the pool so the next checkout opens fresh connections."""

    def __init__(self, plugin: Checked, interval: float) -> None:
        self._plugin = plugin
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: HealthStatus | None = None
        self.changes: deque[HealthStatus] = deque(maxlen=100)
        """The most recent state changes (the first check counts as one), oldest first."""

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"floe-compute-health-{self._plugin.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval + 5)

    def check_once(self) -> HealthStatus:
        return self._record(self._plugin.health_check())

    async def run(self) -> None:
        """Check on the interval from an asyncio task, for applications with no spare thread:
        ``task = asyncio.create_task(monitor.run())``; cancelling the task stops it."""
        import asyncio

        while True:
            try:
                self._record(await self._plugin.ahealth_check())
            except Exception:  # health_check never raises; this guards the task itself
                log.exception("health monitor of %s failed", self._plugin.pool_name)
            await asyncio.sleep(self._interval)

    def _record(self, status: HealthStatus) -> HealthStatus:
        previous = self.last
        self.last = status
        if previous is None or previous.status is not status.status:
            self.changes.append(status)
            level = logging.INFO if status.status is HealthState.HEALTHY else logging.WARNING
            log.log(
                level,
                "health of %s changed to %s: %s",
                self._plugin.pool_name,
                status.status,
                status.message,
                extra={"floe": {"event": "health_change", "status": str(status.status)}},
            )
        if status.status is HealthState.UNHEALTHY:
            self._plugin.discard_idle_connections()
        return status

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check_once()
            except Exception:  # health_check never raises; this guards the thread itself
                log.exception("health monitor of %s failed", self._plugin.pool_name)
