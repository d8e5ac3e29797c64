"""Running a query on another thread, and waiting for it to show as running: what a test of
stopping queries needs, for the contract suite and for an engine's own tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from floe_compute.context import RunningQuery
from floe_compute.plugin import ComputePlugin

__all__ = ["Outcome", "run_in_thread", "wait_until_listed", "wait_until_unlisted"]


@dataclass
class Outcome:
    """What a call run by :func:`run_in_thread` returned or raised, and when it ended."""

    thread: threading.Thread = field(repr=False)
    value: Any = None
    error: BaseException | None = None
    ended: float | None = None  # time.monotonic()

    def join(self, timeout: float = 30.0) -> Outcome:
        """Wait for the call; fails the test if it is still running after ``timeout`` seconds."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout:g}s"
        return self


def run_in_thread(call: Callable[[], Any]) -> Outcome:
    """Start ``call`` on a new thread (a blocked ``execute()``, say) and return at once."""

    def run() -> None:
        try:
            outcome.value = call()
        except BaseException as exc:
            outcome.error = exc
        outcome.ended = time.monotonic()

    outcome = Outcome(threading.Thread(target=run, name="floe-test-call", daemon=True))
    outcome.thread.start()
    return outcome


def wait_until_listed(plugin: ComputePlugin, query_id: str, timeout: float = 30.0) -> RunningQuery:
    """Wait until ``plugin.running_queries()`` lists ``query_id``: the query was registered."""
    deadline = time.monotonic() + timeout
    while True:
        for query in plugin.running_queries():
            if query.query_id == query_id:
                return query
        assert time.monotonic() < deadline, f"{query_id} never showed as running"
        time.sleep(0.005)


def wait_until_unlisted(plugin: ComputePlugin, query_id: str, timeout: float = 30.0) -> None:
    """Wait until ``plugin.running_queries()`` no longer lists ``query_id``: the query ended."""
    deadline = time.monotonic() + timeout
    while any(query.query_id == query_id for query in plugin.running_queries()):
        assert time.monotonic() < deadline, f"{query_id} still shows as running after {timeout:g}s"
        time.sleep(0.005)
