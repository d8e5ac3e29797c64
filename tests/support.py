"""Helpers shared by the tests: integration tests must not skip in CI."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip locally when an engine or server is missing; in CI that is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


@contextmanager
def cyclic_garbage(*modules: str) -> Iterator[list[str]]:
    """The garbage collector off for the block; then one collection, and the list is filled with
    the types (``module.Name``) of the freed objects defined in ``modules`` (and their submodules).
    Only those: another thread of the process (a test's leftover server or exporter) may leave
    cycles of its own meanwhile."""
    found: list[str] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection frees goes to gc.garbage, to be looked at
    try:
        yield found
        gc.collect()
        for obj in gc.garbage:
            kind = type(obj)
            if kind.__module__.split(".")[0] in modules:
                found.append(f"{kind.__module__}.{kind.__qualname__}")
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def run_directory(name: str) -> Path:
    """A directory of this test run's own, the same in every xdist worker of the run (for a server
    the workers share: ``fixtures.shared``)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    return Path(tempfile.gettempdir()) / f"floe-{name}-{run}"


def duckdb_connection(plugin: Any) -> Any:
    """The DuckDB connection of ``plugin``'s pool of size 1 (``pool={"size": 1, "max_overflow": 0}``),
    taken before a test's query runs on it, for :func:`duckdb_is_free`."""
    assert plugin.engine.pool.size() == 1, "only with a pool of size 1 is this the query's connection"
    raw = plugin.engine.raw_connection()
    try:
        return raw.driver_connection
    finally:
        raw.close()


def duckdb_is_free(connection: Any, timeout: float = 10.0) -> bool:
    """Whether DuckDB runs a query on ``connection`` at once: it runs one query at a time per
    connection, so a query the library stopped on its side only (still running inside DuckDB)
    holds this one back. ``timeout`` is a bound for a hang, not a speed target."""
    from floe_compute.testing.threads import run_in_thread

    probe = run_in_thread(lambda: connection.execute("SELECT 42").fetchall())
    probe.thread.join(timeout)
    if probe.thread.is_alive():
        connection.interrupt()  # stop what holds it, so that the failing test ends
        probe.thread.join(timeout)
        return False
    if probe.error is not None:
        raise probe.error
    return bool(probe.value == [(42,)])


@dataclass
class Interrupted:
    """What a script printed after a SIGINT, and how long the interrupt took to reach its caller."""

    line: str
    """The first line printed after the signal."""
    stopped: float
    """Seconds from the signal to that line."""
    rest: str
    returncode: int
    stderr: str


def interrupt(script: Path, args: Sequence[str], ready: Callable[[str, int], int]) -> Interrupted:
    """Run ``script`` with ``args``; once ``ready(first line, pid)`` returns the pid to interrupt
    (it waits for the query to run), send that process SIGINT and read what follows."""
    with (script.parent / f"{script.stem}.stderr").open("w+") as errors:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert proc.stdout is not None
        target = ready(proc.stdout.readline().strip(), proc.pid)
        # timed from the signal (the query has run for a while) to the KeyboardInterrupt reaching
        # the caller: start-up and the query's own run are not in it
        sent = time.monotonic()
        os.kill(target, signal.SIGINT)
        line = proc.stdout.readline().strip()
        stopped = time.monotonic() - sent
        # the rest from the same reader: readline() may already hold the next line in its buffer
        # (communicate() reads the pipe itself and would lose it)
        rest = proc.stdout.read()
        proc.wait(timeout=60)
        errors.seek(0)
        return Interrupted(line, stopped, rest, proc.returncode, errors.read())
