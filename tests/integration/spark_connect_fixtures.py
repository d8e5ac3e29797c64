"""The Spark Connect cluster of the Spark Connect tests: one per test run, shared by the xdist
workers (``fixtures.spark_connect.shared_cluster``: a launcher process stops it when the last
worker leaves or dies), a fresh database per test. No test may stop the shared cluster: the
restart test starts a lone Connect server of its own (``new_connect_server``).

Missing Java or pyspark tool environment skips locally and fails in CI (``require``).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator

import pytest
from fixtures.spark import SparkNotInstalledError, find_spark_home
from fixtures.spark_connect import SparkConnectCluster, shared_cluster

from support import require, run_directory


def _require_spark_connect() -> None:
    require(
        importlib.util.find_spec("pyspark") is not None,
        "pyspark-client is not installed (uv sync --all-extras)",
    )
    try:
        find_spark_home()
    except SparkNotInstalledError as exc:
        require(False, str(exc))
        raise


def new_connect_server() -> SparkConnectCluster:
    """A lone Connect server (``local[1]``) of the calling test's own, started."""
    _require_spark_connect()
    server = SparkConnectCluster(workers=0)
    try:
        return server.start()
    except BaseException:
        server.cleanup()
        raise


@pytest.fixture(scope="session")
def connect_cluster() -> Iterator[SparkConnectCluster]:
    _require_spark_connect()
    with shared_cluster(run_directory("spark-connect")) as cluster:
        yield cluster


@pytest.fixture
def connect_db(connect_cluster: SparkConnectCluster) -> str:
    """A database of this test's own (the cluster's warehouse goes at the end of the run)."""
    from floe_compute import create_plugin

    name = f"t_{uuid.uuid4().hex[:12]}"
    with create_plugin(connect_cluster.url(), pool={"size": 1, "max_overflow": 0}) as admin:
        admin.execute(f"CREATE DATABASE {name}").close()
    return name


@pytest.fixture
def connect_url(connect_cluster: SparkConnectCluster, connect_db: str) -> str:
    return f"spark+connect://{connect_cluster.host}:{connect_cluster.port}/{connect_db}"
