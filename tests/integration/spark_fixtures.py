"""The Spark Thrift Server of the Spark tests: one per test session, a fresh database per test.

Every Spark test module sets ``pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]``.
Why one xdist group: the server is a JVM running ``local[2]`` on a 2-core machine, 15-20 s to start
and ~700 MB. Every Spark test carries ``xdist_group("spark")`` (``make test`` runs ``--dist
loadgroup``), so they all run in one worker, which starts the server on first use and stops it at
the end; the other worker runs the rest of the suite meanwhile. No cross-process reference
counting: a worker that finished early cannot take the server away from one still using it, and
the server dies with the worker that started it even if that worker is killed (parent-death
signal in ``fixtures/spark.py``).

Missing Java or pyspark tool environment skips locally and fails in CI (``require``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fixtures.spark import SparkNotInstalledError, SparkThriftServer

from support import require


def new_server(**options: Any) -> SparkThriftServer:
    """A started server, or a skip (locally) / failure (CI) when Java or pyspark is missing."""
    require(importlib.util.find_spec("pyhive") is not None, "PyHive is not installed (uv sync --all-extras)")
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


@pytest.fixture(scope="session")
def spark_server() -> Iterator[SparkThriftServer]:
    """The shared server, with its UI's REST API on (tests read job states and descriptions).
    ``FLOE_SPARK_PORT`` (and ``FLOE_SPARK_UI_PORT``) use a server already running instead."""
    if port := os.environ.get("FLOE_SPARK_PORT"):
        server = SparkThriftServer.attach(int(port), int(os.environ.get("FLOE_SPARK_UI_PORT", "0")))
        yield server
        server.cleanup()
        return
    server = new_server(ui=True)
    yield server
    server.cleanup()


@pytest.fixture
def spark_db(spark_server: SparkThriftServer) -> Iterator[str]:
    """A database of this test's own, dropped (with its tables) afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    spark_server.query(f"CREATE DATABASE {name}")
    yield name
    if spark_server.running:
        spark_server.query(f"DROP DATABASE IF EXISTS {name} CASCADE")


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
