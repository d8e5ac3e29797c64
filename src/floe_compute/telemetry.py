"""OpenTelemetry spans and metrics, following the database semantic conventions.

Everything goes through the global providers, so it costs nothing until the application configures
an SDK. Until something in the process imports ``opentelemetry``, no provider can exist: then a
query records nothing and does not import it either (a short-lived command starts faster). Each
query checks again, so an application that sets up the SDK later gets spans and metrics from then
on (a variable naming a provider, ``OTEL_PYTHON_TRACER_PROVIDER``, is read when the plugin is made).
Instruments are created once per process; observable ones read every live plugin's pool.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from floe_compute.errors import QueryTimeoutError

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.trace import Tracer

    from floe_compute.context import QueryContext
    from floe_compute.pool import PoolTracker

__all__ = ["Telemetry"]

_SCOPE = "floe_compute"
_POOL = "db.client.connection.pool.name"
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60)
_HEALTH_STATES = ("healthy", "degraded", "unhealthy")
_PROVIDER_VARIABLES = ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")


def _provider_named() -> bool:
    """Whether a variable names a provider that the OpenTelemetry API would load on first use.
    Read once per plugin: a lookup of an unset name in ``os.environ`` costs a ``KeyError``, which
    for every query was a twentieth of a short query's CPU."""
    return any(os.environ.get(name) for name in _PROVIDER_VARIABLES)


class _Instruments:
    """The process-wide instruments, fed by every plugin that has telemetry on."""

    def __init__(self) -> None:
        from opentelemetry import metrics

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
        self.query_retries = meter.create_counter(
            "floe.client.query.retries",
            unit="{query}",
            description="Reads run again on a fresh connection (the reason is an attribute).",
        )
        self._observe_pools(meter)

    def _observe_pools(self, meter: Meter) -> None:
        """The pool's state, read from every live plugin's tracker when the metrics are collected."""
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

    @staticmethod
    def _observation(value: int, attributes: dict[str, str]) -> Observation:
        from opentelemetry.metrics import Observation

        return Observation(value, attributes)

    def _pools(self) -> Iterable[tuple[Telemetry, Any]]:
        for telemetry in list(self.live):
            tracker = telemetry.tracker
            if tracker is not None:
                yield telemetry, tracker.snapshot()

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        for t, stats in self._pools():
            yield self._observation(stats.idle, {_POOL: t.pool_name, "db.client.connection.state": "idle"})
            yield self._observation(stats.in_use, {_POOL: t.pool_name, "db.client.connection.state": "used"})

    def _max(self, options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(s.max, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _idle_max(self, options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(s.size, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(s.waiting, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _timeouts(self, options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(s.timeouts, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _reconnects(self, options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(s.reconnects, {_POOL: t.pool_name}) for t, s in self._pools()]

    def _health(self, options: CallbackOptions) -> Iterable[Observation]:
        for telemetry in list(self.live):
            if telemetry.health is None:
                continue
            for state in _HEALTH_STATES:
                value = 1 if telemetry.health == state else 0
                yield self._observation(value, {_POOL: telemetry.pool_name, "state": state})


_instruments: _Instruments | None = None
_instruments_lock = threading.Lock()


def _get_instruments() -> _Instruments:
    global _instruments
    with _instruments_lock:
        if _instruments is None:
            _instruments = _Instruments()
        return _instruments


class Telemetry:
    """One plugin's spans and metrics; every method is a no-op when telemetry is off, and until
    OpenTelemetry is in use in the process (see the module's docstring)."""

    def __init__(self, *, db_system: str, namespace: str, pool_name: str, enabled: bool) -> None:
        self.db_system = db_system
        self.namespace = namespace
        self.pool_name = pool_name
        self.enabled = enabled
        self.tracker: PoolTracker | None = None
        self.health: str | None = None
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()
        self._provider_named = enabled and _provider_named()

    def _active(self) -> bool:
        """Whether spans and metrics are recorded; the first call that finds OpenTelemetry in use
        gets the tracer and attaches the pool's instruments."""
        if self._tracer is not None:
            return True
        # in use: the API imported (by the application, an instrumentation, opentelemetry-instrument)
        # or a provider named
        if not self.enabled or not (self._provider_named or "opentelemetry" in sys.modules):
            return False
        with self._lock:
            if self._tracer is None:
                from opentelemetry import trace

                if self.tracker is not None:
                    self._attach_instruments(self.tracker)
                self._tracer = trace.get_tracer(_SCOPE)
        return True

    def attach(self, tracker: PoolTracker) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.tracker = tracker
            if self._tracer is not None:
                self._attach_instruments(tracker)
        self._active()

    def _attach_instruments(self, tracker: PoolTracker) -> None:
        instruments = _get_instruments()
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
        if not self._active():
            return None
        from opentelemetry.trace import SpanKind

        assert self._tracer is not None
        attributes = {
            "db.system.name": self.db_system,
            "db.operation.name": context.operation,
            "db.query.summary": context.summary,
            "db.namespace": self.namespace,
            "floe.query.id": context.query_id,
            _POOL: self.pool_name,
        }
        attributes.update({f"floe.query.tag.{k}": v for k, v in context.tags.items()})
        return self._tracer.start_span(context.summary, kind=SpanKind.CLIENT, attributes=attributes)

    @contextlib.contextmanager
    def current(self, context: QueryContext) -> Iterator[None]:
        """Make the query's span the current one while the driver works, so that spans of other
        instrumentations (SQLAlchemy's, the HTTP clients inside cloud drivers) nest under it."""
        token = self.enter(context)
        try:
            yield
        finally:
            self.leave(token)

    def enter(self, context: QueryContext) -> object | None:
        """:meth:`current` as two calls, for the fetch loop (a token for :meth:`leave`)."""
        if context.span is None:
            return None
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        return otel_context.attach(trace.set_span_in_context(context.span))

    @staticmethod
    def leave(token: object | None) -> None:
        if token is not None:
            from opentelemetry import context as otel_context

            otel_context.detach(token)  # type: ignore[arg-type]

    def query_finished(self, context: QueryContext, error: BaseException | None, rows: int) -> None:
        if self._tracer is None:  # off, or no OpenTelemetry when the query started
            return
        duration = time.perf_counter() - context.started
        attributes: dict[str, str] = {
            "db.system.name": self.db_system,
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
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()

    def query_retried(self, context: QueryContext, reason: str) -> None:
        """A counter and a span event: the query runs again on a fresh connection."""
        if self._tracer is None:
            return
        _get_instruments().query_retries.add(1, {_POOL: self.pool_name, "reason": reason})
        if context.span is not None:
            context.span.add_event("db.query.retry", {"reason": reason, "attempt": context.retries})

    def health_changed(self, state: str) -> None:
        if self.enabled:
            self.health = state
