"""The running-queries registry of one plugin: add, remove, list, cancel, and cancel ahead.

A query is listed from ``execute()`` until its result is released, or until a statement that
returns no rows has finished on the engine. A cancel may arrive before its query is registered
(an asyncio task cancelled while its ``execute()`` waits for a worker thread): it is remembered
and the query is cancelled as it registers.
"""

from __future__ import annotations

import threading
import time

from floe_compute.context import QueryContext, RunningQuery
from floe_compute.errors import ComputeError
from floe_compute.timeouts import QueryState

__all__ = ["RunningQueries"]


class RunningQueries:
    def __init__(self, engine: str, pool_name: str) -> None:
        self._engine = engine
        self._pool_name = pool_name
        self._lock = threading.Lock()
        self._running: dict[str, QueryContext] = {}
        self._preempted: set[str] = set()

    def add(self, context: QueryContext) -> None:
        """Register a query; its id must be unique among the running ones."""
        with self._lock:
            if context.query_id in self._running:
                raise ComputeError(
                    f"{self._engine}: a query with id {context.query_id!r} is already running on "
                    f"{self._pool_name}; query ids must be unique among running queries",
                    engine=self._engine,
                )
            self._running[context.query_id] = context
            preempted = context.query_id in self._preempted
            self._preempted.discard(context.query_id)
        if preempted:
            context.handle.cancel()

    def remove(self, context: QueryContext) -> None:
        with self._lock:
            if self._running.get(context.query_id) is context:
                del self._running[context.query_id]

    def get(self, query_id: str) -> QueryContext | None:
        with self._lock:
            return self._running.get(query_id)

    def contexts(self) -> list[QueryContext]:
        with self._lock:
            return list(self._running.values())

    def listed(self) -> list[RunningQuery]:
        """The queries running now, as the public API shows them."""
        return [
            RunningQuery(
                query_id=c.query_id,
                summary=c.summary,
                tags=dict(c.tags),
                started_at=c.started_at,
                elapsed_s=c.handle.elapsed,
                timeout=c.timeout,
                session_id=c.session.session_id if c.session is not None else None,
            )
            for c in self.contexts()
            if c.handle.state is QueryState.RUNNING
        ]

    def cancel(self, query_id: str) -> bool:
        """Cancel a registered query; False when none has that id (unknown or finished)."""
        with self._lock:
            context = self._running.get(query_id)
        return context is not None and context.handle.cancel()

    def cancel_or_preempt(self, query_id: str) -> None:
        """Cancel a query that may not have registered yet: it is cancelled when it does."""
        with self._lock:
            context = self._running.get(query_id)
            if context is None:
                self._preempted.add(query_id)
        if context is not None:
            context.handle.cancel()

    def cancel_all(self, grace: float) -> None:
        """Cancel every running query and wait up to ``grace`` seconds for their threads to roll
        back and give their connections back."""
        running = self.contexts()
        for context in running:
            context.handle.cancel()
        deadline = time.monotonic() + grace
        for context in running:
            context.handle.wait_ended(max(0.0, deadline - time.monotonic()))

    def forget_preempted(self, query_id: str) -> None:
        with self._lock:
            self._preempted.discard(query_id)
