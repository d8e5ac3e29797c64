"""Snowflake answering "busy" (HTTP 429/503) or cutting a connection before a query started.

The connector sends a query-request again by itself when Snowflake answers 429 or 503, or the
connection breaks before the answer: the same request id each time (with ``retryCount``), which
Snowflake runs at most once, so this is safe for writes too. But it keeps at it with no end unless
the connection has a ``network_timeout`` (it has none by default). The backoff policy here bounds
those pauses by the running query's deadline: the query ends at its deadline (or when it is
cancelled) with the connector's next pause, not minutes later. A 429/503 that does reach the core
(a connector whose own retries ended first) means the statement never started.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator

from snowflake.connector import errors as sf_errors
from snowflake.connector.backoff_policies import exponential_backoff

from floe_compute.context import QueryContext

__all__ = ["QUERY", "Stopped", "bounded_backoff", "never_ran"]

QUERY: contextvars.ContextVar[QueryContext | None] = contextvars.ContextVar(
    "floe_snowflake_query", default=None
)
"""The query whose query-request the connector is sending (set by the dialect around ``execute``)."""

_SLICE = 0.1  # how often a pause checks whether its query was stopped
_GRACE = 1.0  # how long past the deadline a pause waits for the watchdog to mark the query stopped
_default: Callable[[], Iterator[int]] = exponential_backoff()


class Stopped(sf_errors.OperationalError):
    """Ends the connector's re-sending of a query-request once its query's deadline has passed or
    it was cancelled: the core reports the timeout (or the cancel)."""


def bounded_backoff() -> Iterator[int]:
    """The connector's pauses between two sends of a request (its default policy), each cut short
    at the deadline of the query being sent; outside a query (login, fetches) the default as is."""
    query = QUERY.get()
    pauses = _default()
    if query is None:
        yield from pauses
        return
    handle = query.handle
    yield 0  # the first pause is taken here, where the deadline is seen, not by the connector
    for pause in pauses:
        until = time.monotonic() + pause
        if handle.deadline is not None:
            until = min(until, handle.deadline + _GRACE)
        while not handle.stopped and (left := until - time.monotonic()) > 0:
            time.sleep(min(left, _SLICE))
        if handle.stopped or (handle.deadline is not None and time.monotonic() >= handle.deadline + _GRACE):
            raise Stopped(msg="Snowflake was busy (HTTP 429/503) or unreachable until the query's deadline")
        yield 0


def never_ran(exc: Exception) -> str | None:
    """HTTP 429/503 answered to the query-request: Snowflake did not start the statement."""
    if isinstance(exc, sf_errors.TooManyRequests):
        return "Snowflake answered HTTP 429 (too many requests) before the statement started"
    if isinstance(exc, sf_errors.ServiceUnavailableError):
        return "Snowflake answered HTTP 503 (unavailable) before the statement started"
    return None
