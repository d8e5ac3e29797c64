"""Session fixtures for the Iceberg tests: extension directory, a pyiceberg table, a REST catalog.

Why a module and not conftest: test modules import these names, so they stay independent of
whatever else ``tests/integration/conftest.py`` holds. Everything is session-scoped (importing
pyiceberg costs ~3.5 s), and the tests carry one ``xdist_group`` so one worker builds it all once.
Each xdist worker has its own ``tmp_path_factory``, hence its own extension directory.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.iceberg import IcebergTableFixture, build_iceberg_table

from support import require

CLIENT_ID = "floe"
PACKAGES = ("duckdb_extension_iceberg", "duckdb_extension_avro", "duckdb_extension_httpfs")


def require_extension_packages() -> None:
    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    require(not missing, f"{', '.join(missing)} not installed (uv sync --all-extras)")


@pytest.fixture(scope="session")
def extension_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An extension directory for this worker; the first plugin that connects fills it."""
    require_extension_packages()
    return tmp_path_factory.mktemp("duckdb-extensions")


@pytest.fixture(scope="session")
def iceberg_table(tmp_path_factory: pytest.TempPathFactory) -> IcebergTableFixture:
    """ns.events written by pyiceberg in two snapshots: 3000 rows, then 2000 more."""
    require(importlib.util.find_spec("pyiceberg") is not None, "pyiceberg not installed")
    return build_iceberg_table(tmp_path_factory.mktemp("iceberg"))


@pytest.fixture(scope="session")
def client_secret() -> str:
    """Random, so finding it anywhere in output is proof of a leak, never a coincidence."""
    return f"floe-secret-{secrets.token_hex(8)}"


@pytest.fixture(scope="session")
def rest_catalog(iceberg_table: IcebergTableFixture, client_secret: str) -> Iterator[Any]:
    """A real Iceberg REST catalog over the table's SqlCatalog on 127.0.0.1, OAuth2 required."""
    from fixtures.iceberg_rest import IcebergRestServer

    with IcebergRestServer(
        iceberg_table.catalog(), client_id=CLIENT_ID, client_secret=client_secret
    ) as server:
        yield server


@pytest.fixture
def lake(rest_catalog: Any, client_secret: str) -> dict[str, Any]:
    """The ``attach`` entry for the REST catalog, as a user would write it in a manifest."""
    return {
        "name": "lake",
        "endpoint": rest_catalog.url,
        "warehouse": "warehouse",
        "client_id": CLIENT_ID,
        "client_secret": client_secret,
    }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """moto's S3 API on 127.0.0.1, checking signatures: a bucket ``lake`` and one user's keys."""
    require(importlib.util.find_spec("moto") is not None, "moto not installed (uv sync)")
    from fixtures.s3 import MotoS3Server

    with MotoS3Server() as server:
        server.prepare(("lake",))
        yield server


@pytest.fixture(scope="session")
def s3_table(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> IcebergTableFixture:
    """ns.events as :func:`iceberg_table`, written by pyiceberg to ``s3://lake/warehouse``."""
    require(importlib.util.find_spec("pyiceberg") is not None, "pyiceberg not installed")
    properties = s3_server.pyiceberg_properties(s3_server.keys)
    return build_iceberg_table(
        tmp_path_factory.mktemp("iceberg-s3"), warehouse="s3://lake/warehouse", properties=properties
    )


@pytest.fixture(scope="session")
def s3_rest_catalog(s3_table: IcebergTableFixture, client_secret: str) -> Iterator[Any]:
    """The REST catalog over the S3 table's catalog (it reads the metadata from S3 itself)."""
    from fixtures.iceberg_rest import IcebergRestServer

    with IcebergRestServer(s3_table.catalog(), client_id=CLIENT_ID, client_secret=client_secret) as server:
        yield server


@pytest.fixture
def s3_settings(s3_server: Any) -> dict[str, Any]:
    """The ``s3`` section a user writes for the moto server."""
    return {
        "endpoint": s3_server.endpoint,
        "region": "us-east-1",
        "url_style": "path",
        "key_id": s3_server.keys.key_id,
        "secret_key": s3_server.keys.secret_key,
    }
