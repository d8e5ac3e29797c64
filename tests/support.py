"""Helpers shared by the tests: integration tests must not skip in CI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
