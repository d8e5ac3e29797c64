"""The Spark Thrift Server of the Spark tests: one per test run, a fresh database per test.

* ``spark_server``: one server per test run, shared by the xdist workers (``fixtures.spark.
  shared_server``: a launcher process watches the workers and stops the server when the last one
  leaves or dies, so a worker killed by the OOM killer or a CI timeout cannot leave a JVM behind).
  Why not an ``xdist_group``: ``--dist loadgroup`` does not keep a group on one worker with the
  pytest and xdist versions here (see ``snowflake_fixtures.py``), and a second JVM (~700 MB, 15-60 s
  of two loaded cores to start) per worker is what sharing avoids. No test may stop the shared
  server: the restart test starts one of its own (``new_server``).
* ``spark_db``: a database of the test's own, made on one admin session per worker (a Thrift
  session costs a Spark session on the server); not dropped, the server's warehouse goes with it at
  the end of the run (dropped on a server attached with ``FLOE_SPARK_PORT``).

Missing Java or pyspark tool environment skips locally and fails in CI (``require``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fixtures.spark import SparkNotInstalledError, SparkThriftServer, find_spark_home, shared_server

from support import require, run_directory


def new_server(**options: Any) -> SparkThriftServer:
    """A started server of the calling test's own, or a skip (locally) / failure (CI) when Java or
    pyspark is missing."""
    _require_spark()
    try:
        server = SparkThriftServer(**options)
    except SparkNotInstalledError as exc:
        require(False, str(exc))
        raise
    try:
        return server.start()
    except BaseException:
        server.cleanup()
        raise


def _require_spark() -> None:
    require(importlib.util.find_spec("pyhive") is not None, "PyHive is not installed (uv sync --all-extras)")
    try:
        find_spark_home()
    except SparkNotInstalledError as exc:
        require(False, str(exc))
        raise


@pytest.fixture(scope="session")
def spark_server() -> Iterator[SparkThriftServer]:
    """The server of this test run (its UI's REST API on: tests read job states and descriptions).
    ``FLOE_SPARK_PORT`` (and ``FLOE_SPARK_UI_PORT``) use a server already running instead."""
    if port := os.environ.get("FLOE_SPARK_PORT"):
        yield SparkThriftServer.attach(int(port), int(os.environ.get("FLOE_SPARK_UI_PORT", "0")))
        return
    _require_spark()
    with shared_server(run_directory("spark")) as server:
        yield server


@pytest.fixture(scope="session")
def spark_admin(spark_server: SparkThriftServer) -> Iterator[Any]:
    """One session of this worker on the server, for the tests' own DDL."""
    with contextlib.closing(spark_server.connect()) as connection:
        yield connection


@pytest.fixture
def spark_db(spark_server: SparkThriftServer, spark_admin: Any) -> Iterator[str]:
    """A database of this test's own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(spark_admin.cursor()) as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    yield name
    if os.environ.get("FLOE_SPARK_PORT"):  # a server of the user's: leave it as it was
        with contextlib.closing(spark_admin.cursor()) as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} CASCADE")


@pytest.fixture
def spark_url(spark_server: SparkThriftServer, spark_db: str) -> str:
    return f"spark://floe@{spark_server.host}:{spark_server.port}/{spark_db}"


@pytest.fixture
def spark_jobs(spark_server: SparkThriftServer) -> Callable[[], list[dict[str, Any]]]:
    """``spark_jobs()``: the jobs the server's status store knows, from the UI's REST API."""
    return lambda: list_jobs(spark_server)


def list_jobs(server: SparkThriftServer) -> list[dict[str, Any]]:
    assert server.ui_url is not None
    with urllib.request.urlopen(f"{server.ui_url}/api/v1/applications", timeout=60) as response:
        app = json.load(response)[0]["id"]
    with urllib.request.urlopen(f"{server.ui_url}/api/v1/applications/{app}/jobs", timeout=60) as response:
        jobs: list[dict[str, Any]] = json.load(response)
    return jobs


def job_group(operation: Any) -> str:
    """The Spark job group of a Thrift operation: the server names it after the handle's id.
    Every job of the statement carries it, also those its fetches start (their description is the
    statement's text, not ``spark.job.description``)."""
    return str(uuid.UUID(bytes=operation.operationId.guid))


def running_jobs_of(server: SparkThriftServer, groups: set[str]) -> list[dict[str, Any]]:
    return [j for j in list_jobs(server) if j["status"] == "RUNNING" and j.get("jobGroup") in groups]
