"""OpenTelemetry spans and metrics, following the database semantic conventions.

Everything goes through the global providers, so it costs nothing until the application configures
an SDK. Instruments are created once per process; observable ones read every live plugin's pool.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from floe_compute.errors import QueryTimeoutError

if TYPE_CHECKING:
    from floe_compute.health import HealthStatus
    from floe_compute.plugin import ComputePlugin, QueryContext
    from floe_compute.pool import PoolTracker

__all__ = ["Telemetry"]

_SCOPE = "floe_compute"
_POOL = "db.client.connection.pool.name"
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60)
_HEALTH_STATES = ("healthy", "degraded", "unhealthy")


class _Instruments:
    """The process-wide instruments, fed by every plugin that has telemetry on."""

    def __init__(self) -> None:
        self.live: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        meter = metrics.get_meter(_SCOPE)
        self.operation_duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations, fetching included.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time",
            unit="s",
            description="The time it took to create a new connection.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="The time it took to obtain an open connection from the pool.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time",
            unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.query_timeouts = meter.create_counter(
            "floe.compute.query.timeouts",
            unit="{query}",
            description="Queries cancelled on the engine because their deadline passed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            [self._count],
            unit="{connection}",
            description="The number of connections that are currently in the state described.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            [self._max],
            unit="{connection}",
            description="The maximum number of open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.max",
            [self._idle_max],
            unit="{connection}",
            description="The maximum number of idle open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            [self._pending],
            unit="{request}",
            description="The number of current pending requests for an open connection.",
        )
        meter.create_observable_counter(
            "db.client.connection.timeouts",
            [self._timeouts],
            unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to obtain "
            "a connection from the pool.",
        )
        meter.create_observable_counter(
            "floe.compute.reconnects",
            [self._reconnects],
            unit="{connection}",
            description="Connections opened to replace invalidated ones.",
        )
        meter.create_observable_gauge(
            "floe.compute.health",
            [self._health],
            unit="1",
            description="1 for the pool's current health state, 0 for the others.",
        )

    def _pools(self) -> Iterable[tuple[Telemetry, Any]]:
        for telemetry in list(self.live):
            tracker = telemetry.tracker
            if tracker is not None:
                yield telemetry, tracker.snapshot()

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        for t, stats in self._pools():
            yield Observation(stats.idle, {_POOL: t.pool_name, "db.client.connection.state": "idle"})
            yield Observation(stats.in_use, {_POOL: t.pool_name, "db.client.connection.state": "used"})

    def _max(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.max, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _idle_max(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.size, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.waiting, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _timeouts(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.timeouts, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _reconnects(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.reconnects, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _health(self, options: CallbackOptions) -> Iterable[Observation]:
        for telemetry in list(self.live):
            if telemetry.health is None:
                continue
            for state in _HEALTH_STATES:
                value = 1 if telemetry.health == state else 0
                yield Observation(value, {_POOL: telemetry.pool_name, "state": state})


_instruments: _Instruments | None = None
_instruments_lock = threading.Lock()


def _get_instruments() -> _Instruments:
    global _instruments
    with _instruments_lock:
        if _instruments is None:
            _instruments = _Instruments()
        return _instruments


class Telemetry:
    """One plugin's spans and metrics; every method is a no-op when telemetry is off."""

    def __init__(self, plugin: ComputePlugin, *, enabled: bool) -> None:
        self._plugin = plugin
        self.enabled = enabled
        self.tracker: PoolTracker | None = None
        self.health: str | None = None
        self._tracer = trace.get_tracer(_SCOPE) if enabled else None

    @property
    def pool_name(self) -> str:
        return self._plugin.pool_name

    def attach(self, tracker: PoolTracker) -> None:
        if not self.enabled:
            return
        instruments = _get_instruments()
        self.tracker = tracker
        attributes = {_POOL: self.pool_name}
        histograms = {
            "create": instruments.create_time,
            "wait": instruments.wait_time,
            "use": instruments.use_time,
        }
        tracker.listeners.append(lambda name, secs: histograms[name].record(secs, attributes))
        instruments.live.add(self)

    def detach(self) -> None:
        if self.enabled and _instruments is not None:
            _instruments.live.discard(self)
        self.tracker = None

    def query_started(self, context: QueryContext) -> Any:
        if self._tracer is None:
            return None
        attributes = {
            "db.system.name": self._plugin.db_system,
            "db.operation.name": context.operation,
            "db.query.summary": context.summary,
            "db.namespace": self._plugin.config.url.database or "",
            "floe.query.id": context.query_id,
            _POOL: self.pool_name,
        }
        attributes.update({f"floe.query.tag.{k}": v for k, v in context.tags.items()})
        return self._tracer.start_span(context.summary, kind=SpanKind.CLIENT, attributes=attributes)

    @contextlib.contextmanager
    def current(self, context: QueryContext) -> Iterator[None]:
        """Make the query's span the current one while the driver works, so that spans of other
        instrumentations (SQLAlchemy's, the HTTP clients inside cloud drivers) nest under it."""
        if context.span is None:
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(context.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def enter(self, context: QueryContext) -> object | None:
        """:meth:`current` as two calls, for the fetch loop (a token for :meth:`leave`)."""
        if context.span is None:
            return None
        return otel_context.attach(trace.set_span_in_context(context.span))

    @staticmethod
    def leave(token: object | None) -> None:
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def query_finished(self, context: QueryContext, error: BaseException | None, rows: int) -> None:
        if not self.enabled:
            return
        duration = time.perf_counter() - context.started
        attributes: dict[str, str] = {
            "db.system.name": self._plugin.db_system,
            "db.operation.name": context.operation,
            _POOL: self.pool_name,
        }
        instruments = _get_instruments()
        if error is not None:
            attributes["error.type"] = type(error).__name__
        if isinstance(error, QueryTimeoutError):
            instruments.query_timeouts.add(1, {_POOL: self.pool_name})
        instruments.operation_duration.record(duration, attributes)
        span = context.span
        if span is None:
            return
        span.set_attribute("db.response.returned_rows", rows)
        if isinstance(error, QueryTimeoutError):
            span.add_event(
                "db.query.timeout",
                {"timeout_s": error.timeout, "elapsed_s": round(error.elapsed, 3)},
            )
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()

    def health_changed(self, status: HealthStatus) -> None:
        if self.enabled:
            self.health = str(status.status)
