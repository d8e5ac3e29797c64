"""The Databricks-like endpoint of the Databricks tests: one HTTP-mode Spark Thrift Server per test run,
the connector shim applied for the session, a fresh database per test.

* ``databricks_server``: one server per test run, shared by the xdist workers
  (``fixtures.databricks.shared_server``, the launcher of ``fixtures.shared`` that ``spark_fixtures``
  uses too: it stops the server when the last worker leaves or dies). No test may stop it: the
  restart test starts one of its own (``new_databricks_server``). ``FLOE_DATABRICKS_PORT`` uses a
  server already running (``python fixtures/spark.py --transport http``) instead.
* ``databricks_db``: a database of the test's own.

Missing Java, pyspark tool environment or connector skips locally and fails in CI (``require``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.databricks import databricks_like_server, shared_server, shim
from fixtures.spark import SparkNotInstalledError, SparkThriftServer, find_spark_home

from support import require, run_directory

TOKEN = "dapi-floe-test-token-0f1e2d3c"
"""The token the tests connect with: the server accepts any, so it must never show anywhere."""


def _require_databricks() -> None:
    require(
        importlib.util.find_spec("databricks.sql") is not None, "databricks-sql-connector is not installed"
    )
    require(importlib.util.find_spec("pyhive") is not None, "PyHive is not installed (uv sync --all-extras)")
    try:
        find_spark_home()
    except SparkNotInstalledError as exc:
        require(False, str(exc))
        raise


def new_databricks_server() -> SparkThriftServer:
    """A started HTTP-mode server of the calling test's own (to kill and restart)."""
    _require_databricks()
    try:
        server = databricks_like_server()
    except SparkNotInstalledError as exc:
        require(False, str(exc))
        raise
    try:
        return server.start()
    except BaseException:
        server.cleanup()
        raise


@pytest.fixture(scope="session")
def databricks_server() -> Iterator[SparkThriftServer]:
    if port := os.environ.get("FLOE_DATABRICKS_PORT"):
        attached = SparkThriftServer.attach(int(port))
        attached.transport = "http"
        yield attached
        return
    _require_databricks()
    with shared_server(run_directory("databricks")) as server:
        yield server


@pytest.fixture(scope="session")
def databricks_shim(databricks_server: SparkThriftServer) -> Iterator[None]:
    with shim():
        yield


@pytest.fixture(scope="session")
def databricks_admin(databricks_server: SparkThriftServer) -> Iterator[Any]:
    """One session of this worker on the server (PyHive over HTTP), for the tests' own DDL."""
    with contextlib.closing(databricks_server.connect()) as connection:
        yield connection


@pytest.fixture
def databricks_db(databricks_admin: Any, databricks_shim: None) -> Iterator[str]:
    """A database of this test's own; not dropped: the server's warehouse goes with it at the end
    of the run (dropped on a server attached with ``FLOE_DATABRICKS_PORT``)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(databricks_admin.cursor()) as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    yield name
    if os.environ.get("FLOE_DATABRICKS_PORT"):
        with contextlib.closing(databricks_admin.cursor()) as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} CASCADE")


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


def databricks_url_of(schema: str) -> str:
    return f"databricks://token:{TOKEN}@127.0.0.1?http_path=/cliservice&catalog=spark_catalog&schema={schema}"


@pytest.fixture
def databricks_url(databricks_db: str) -> str:
    return databricks_url_of(databricks_db)
