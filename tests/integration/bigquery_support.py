"""Names the BigQuery tests share (a plain module: ``bigquery_fixtures`` is loaded as a plugin)."""

from __future__ import annotations

from typing import Any

import pytest

PROJECT = "floe-test"
bigquery_tests = [pytest.mark.bigquery, pytest.mark.xdist_group("bigquery")]
"""Every BigQuery test module's marks: one xdist group, so one emulator serves them all."""


def job_inserts(proxy: Any) -> list[Any]:
    """The ``jobs.insert`` requests the proxy saw, in order."""
    return [x for x in proxy.exchanges if x.method == "POST" and x.path.endswith(f"/projects/{PROJECT}/jobs")]


def is_insert_of(marker: str) -> Any:
    """A proxy predicate: the ``jobs.insert`` of a query whose SQL contains ``marker``."""

    def predicate(x: Any) -> bool:
        return bool(
            x.method == "POST"
            and x.path.endswith("/jobs")
            and marker in x.json["configuration"]["query"]["query"]
        )

    return predicate
