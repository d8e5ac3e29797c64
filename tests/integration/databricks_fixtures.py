"""The Databricks-like endpoint of the Databricks tests: one HTTP-mode Spark Thrift Server per test session,
the connector shim applied for the session, a fresh database per test.

Every Databricks test module sets ``pytestmark = [pytest.mark.databricks, pytest.mark.xdist_group("spark")]``:
it shares the Spark tests' worker (one JVM at a time on a 2-core machine). Missing Java, pyspark tool
environment or connector skips locally and fails in CI (``require``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.databricks import databricks_like_server, shim
from fixtures.spark import SparkNotInstalledError, SparkThriftServer

from support import require

TOKEN = "dapi-floe-test-token-0f1e2d3c"
"""The token the tests connect with: the server accepts any, so it must never show anywhere."""


@pytest.fixture(scope="session")
def databricks_server() -> Iterator[SparkThriftServer]:
    require(
        importlib.util.find_spec("databricks.sql") is not None, "databricks-sql-connector is not installed"
    )
    require(importlib.util.find_spec("pyhive") is not None, "PyHive is not installed (uv sync --all-extras)")
    if port := os.environ.get(
        "FLOE_DATABRICKS_PORT"
    ):  # a server of `python fixtures/spark.py --transport http`
        attached = SparkThriftServer.attach(int(port))
        attached.transport = "http"
        yield attached
        return
    try:
        server = databricks_like_server()
    except SparkNotInstalledError as exc:
        require(False, str(exc))
        raise
    try:
        server.start()  # warmed up with a first query before any test runs under a deadline
    except BaseException:
        server.cleanup()
        raise
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def databricks_shim(databricks_server: SparkThriftServer) -> Iterator[None]:
    with shim():
        yield


@pytest.fixture
def databricks_db(databricks_server: SparkThriftServer, databricks_shim: None) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    databricks_server.query(f"CREATE DATABASE {name}")
    yield name
    if databricks_server.running:
        with contextlib.suppress(Exception):
            databricks_server.query(f"DROP DATABASE IF EXISTS {name} CASCADE")


def databricks_overrides(server: SparkThriftServer, **overrides: Any) -> dict[str, Any]:
    """Point the plugin at the local server: the connector's endpoint option, the Spark query timeout."""
    return {
        "connection_uri": f"http://{server.host}:{server.port}/{server.http_path}",
        "timeout_setting": "spark.sql.thriftServer.queryTimeout",
        # as on a warehouse, a statement runs to its end while it executes and the fetches read its
        # stored rows: the server's query timeout and a cancel then stop it (with incremental collect
        # the jobs run during the fetches, where Spark ignores both)
        "session_configuration": {"spark.sql.thriftServer.incrementalCollect": "false"},
        # a ping is a statement (five HTTP round trips): over 1 s on a loaded 2-core test machine
        "health": {"slow_ping_ms": 5000},
        **overrides,
    }


@pytest.fixture
def databricks_url(databricks_db: str) -> str:
    return f"databricks://token:{TOKEN}@127.0.0.1?http_path=/cliservice&catalog=spark_catalog&schema={databricks_db}"
