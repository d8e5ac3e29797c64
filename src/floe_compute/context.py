"""One query as the core and the engine hooks see it, from ``execute()`` to the release of its
connection, and one query as ``running_queries()`` lists it.

An engine keeps what its dialect and its ``cancel`` hook share (a job id, an operation handle, a
flag) in an object of its own type, reached with :meth:`QueryContext.state`; its dialect finds the
query of a statement with :func:`query_context`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar, overload

from floe_compute.errors import QueryError
from floe_compute.timeouts import QueryHandle

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import ExecutionContext

__all__ = ["QueryContext", "RunningQuery", "SessionPin", "StatementStopped", "query_context"]

Params = Mapping[str, Any]

S = TypeVar("S")

_STATE_LOCK = threading.Lock()
"""Guards the first making of a query's engine state (rare, short: one lock for all queries)."""

E = TypeVar("E", bound=QueryError)

QUERY_OPTION = "floe_query"
"""The execution option that carries the :class:`QueryContext` of a statement."""


@dataclass(slots=True)
class SessionPin:
    """The connection a session holds: its statements run there without a checkout or a release,
    and commit one by one unless a transaction is open."""

    session_id: str
    connection: Connection
    in_transaction: bool = False
    failed_in_transaction: str | None = None
    """The query id of a statement that failed inside the open transaction (it must roll back)."""
    _state: Any = None

    def state(self, kind: type[S]) -> S:
        """The engine's own state of the session (a session id), made on first use; used by the
        session's statements one at a time."""
        if self._state is None:
            self._state = kind()
        if not isinstance(self._state, kind):
            raise TypeError(
                f"session {self.session_id} keeps a {type(self._state).__name__}, not a {kind.__name__}"
            )
        state: S = self._state
        return state


@dataclass(slots=True)
class QueryContext:
    """What the core knows about one query, from its start to the release of its connection.

    Engine hooks receive it: ``begin_query`` and ``annotate_statement`` read the timeout and tags,
    and record in their :meth:`state` what their ``cancel`` needs.
    """

    query_id: str
    summary: str
    operation: str
    timeout: float | None
    max_rows: int | None
    tags: Mapping[str, str] = field(default_factory=dict)
    handle: QueryHandle = field(init=False)
    span: Any = None
    started: float = field(default_factory=time.perf_counter)
    connection: Connection | None = None
    """The pooled SQLAlchemy connection, once checked out."""
    dbapi_connection: Any = None
    """The DBAPI connection the query runs on, once checked out."""
    cursor: Any = None
    """The DBAPI cursor of the statement, set just before the driver is called."""
    sends_parameters: bool = True
    """Whether the driver gets parameters with the statement (a ``%``-style driver then reads
    ``%`` in the text as a placeholder), known when the statement is sent."""
    bound_values: tuple[str, ...] = ()
    """Text forms of the bound parameter values, masked in the library's messages."""
    session: SessionPin | None = None
    """The session the statement runs in, or None for a statement on a pooled connection."""
    retries: int = 0
    """How many times the statement was run again after a lost connection."""
    rerun: Any = None
    """Runs the statement again on a given connection (for a safe retry)."""
    arrow: bool = False
    """The caller will read Arrow batches (``execute(..., arrow=True)``): an engine whose Arrow
    path must be chosen before the statement runs (PostgreSQL's COPY) starts that path."""
    _state: Any = None

    @property
    def started_at(self) -> datetime:
        """When the query started, in UTC (worked out from ``started``: no wall-clock read per
        query)."""
        return datetime.now(timezone.utc) - timedelta(seconds=time.perf_counter() - self.started)

    @overload
    def error(self, engine: str, message: str) -> QueryError: ...
    @overload
    def error(self, engine: str, message: str, kind: type[E]) -> E: ...
    def error(self, engine: str, message: str, kind: type[QueryError] = QueryError) -> QueryError:
        """A ``QueryError`` (or ``kind``) of this query: its id and statement summary attached."""
        return kind(message, engine=engine, query_id=self.query_id, statement=self.summary)

    def state(self, kind: type[S]) -> S:
        """The engine's own per-query state, an instance of ``kind`` made on first use.

        Safe from any thread: the query's thread (the dialect, ``begin_query``) and the thread
        that cancels it get the same object. One query has one kind of state.
        """
        state = self._state
        if state is None:
            with _STATE_LOCK:
                if self._state is None:
                    self._state = kind()
                state = self._state
        if not isinstance(state, kind):
            raise TypeError(f"query {self.query_id} keeps a {type(state).__name__}, not a {kind.__name__}")
        return state


def query_context(execution_context: ExecutionContext | None) -> QueryContext | None:
    """The query a statement belongs to, for an engine's dialect (``do_execute``): None for
    statements the plugin did not start (``plugin.engine`` used directly, reflection)."""
    if execution_context is None:
        return None
    query: QueryContext | None = execution_context.execution_options.get(QUERY_OPTION)
    return query


@dataclass(frozen=True, slots=True)
class RunningQuery:
    """A query that runs now, as ``ComputePlugin.running_queries()`` shows it."""

    query_id: str
    summary: str
    tags: Mapping[str, str]
    started_at: datetime
    elapsed_s: float
    timeout: float | None
    session_id: str | None = None
    """The session the statement runs in (``compute.session()``), or None."""


class StatementStopped(Exception):
    """Raised instead of sending a statement whose query was cancelled or timed out before it
    reached the engine; the caller sees the matching ``QueryError``."""
