"""Helpers shared by the tests: integration tests must not skip in CI."""

from __future__ import annotations

import os
import tempfile
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
