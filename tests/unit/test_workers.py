"""The asyncio face's worker threads: as many as the pool has connections at most, made when a call
finds none idle, each call in its caller's ``contextvars`` context, a call cancelled while queued
never run, and the threads gone after ``shutdown()`` once the queued calls have run."""

from __future__ import annotations

import contextvars
import threading

import pytest

from floe_compute.workers import Workers

TAG: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="none")


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_a_burst_runs_on_at_most_size_threads_and_each_call_in_its_callers_context() -> None:
    workers = Workers("burst", 3)
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked(n: int) -> tuple[int, str, str]:
        started.release()
        assert release.wait(30)
        return n, TAG.get(), threading.current_thread().name

    token = TAG.set("caller")
    try:
        futures = [workers.submit("execute", blocked, n) for n in range(8)]
    finally:
        TAG.reset(token)
    for _ in range(3):
        assert started.acquire(timeout=30)  # three run at once; the other five wait their turn
    assert not any(f.done() for f in futures)
    assert len(_threads("floe-compute-burst-execute")) == 3
    release.set()
    results = [f.result(timeout=30) for f in futures]
    assert [n for n, _, _ in results] == list(range(8))
    assert {tag for _, tag, _ in results} == {"caller"}
    assert {name for _, _, name in results} <= {f"floe-compute-burst-execute_{i}" for i in range(3)}
    workers.shutdown()


def test_a_call_cancelled_while_queued_never_runs_and_errors_reach_the_future() -> None:
    workers = Workers("cancel", 1)
    release = threading.Event()
    ran: list[str] = []
    first = workers.submit("fetch", release.wait, 30)
    queued = workers.submit("fetch", ran.append, "queued")
    assert queued.cancel()
    failing = workers.submit("fetch", int, "not a number")
    release.set()
    assert first.result(timeout=30) is True
    with pytest.raises(ValueError, match="not a number"):
        failing.result(timeout=30)
    assert ran == []
    workers.shutdown()


def test_shutdown_ends_the_threads_after_the_calls_queued_before_it() -> None:
    workers = Workers("ending", 2)
    release = threading.Event()
    futures = [workers.submit("execute", release.wait, 30) for _ in range(4)]
    threads = _threads("floe-compute-ending-execute")
    assert len(threads) == 2
    workers.shutdown()
    release.set()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert all(f.result(timeout=0) is True for f in futures)
    again = workers.submit("execute", lambda: "new threads")  # a call after shutdown starts them anew
    assert again.result(timeout=30) == "new threads"
    workers.shutdown()


def test_a_job_cancelled_while_queued_never_runs_and_a_started_one_reports_its_outcome() -> None:
    workers = Workers("jobs", 1)
    release = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def first() -> str:
        started.set()
        assert release.wait(30)
        return "first"

    running = workers.start("fetch", first)
    queued = workers.start("fetch", ran.append, "queued")
    assert started.wait(30)
    assert not running.cancel()  # started: it runs to its end
    waiting = running.future()  # made while it runs: settled when it ends
    assert queued.cancel() and queued.done() and queued.future().cancelled()
    release.set()
    assert waiting.result(timeout=30) == "first"
    assert running.future() is waiting and running.done()
    assert ran == []
    workers.shutdown()
