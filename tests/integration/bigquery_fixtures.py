"""The BigQuery emulator, datasets on it, and the recording proxy in front of it.

* ``bq_emulator``: one ``bqemulator`` per test run, shared by the xdist workers, stopped when the
  last one finishes or dies (``fixtures.bigquery.shared_emulator``; see ``fakesnow_server`` in
  ``snowflake_fixtures.py`` for why not an ``xdist_group``: ``--dist loadgroup`` does not keep a
  group on one worker here). The emulator runs one query at a time, so the workers' queries queue;
  the BigQuery tests hold answers at a proxy rather than run long queries, so the queue stays short.
* ``bq_dataset``: a fresh dataset per test (tables never leak from one test into another).
* ``bq_proxy``: a :class:`RecordingProxy` in front of the emulator, per test.

Test data stays at a million rows or less: the emulator materialises results in memory (a
``GENERATE_ARRAY`` of 2e8 took 19 GB).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bigquery_support import PROJECT
from fixtures.bigquery import BigQueryEmulator, EmulatorNotInstalledError, shared_emulator
from fixtures.recording_proxy import RecordingProxy

from support import require, run_directory


@pytest.fixture(scope="session")
def bq_emulator() -> Iterator[BigQueryEmulator]:
    require(
        importlib.util.find_spec("sqlalchemy_bigquery") is not None,
        "sqlalchemy-bigquery is not installed (uv sync --all-extras)",
    )
    try:
        BigQueryEmulator(PROJECT)
    except EmulatorNotInstalledError as exc:
        require(False, str(exc))
        raise
    with shared_emulator(run_directory("bqemulator")) as emulator:
        yield emulator


def client(endpoint: str) -> Any:
    """A plain ``google.cloud.bigquery.Client`` on the emulator (or a proxy in front of it)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )


def new_dataset(emulator: BigQueryEmulator) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with client(emulator.url) as bq:
        bq.create_dataset(name)
    return name


@pytest.fixture
def bq_dataset(bq_emulator: BigQueryEmulator) -> str:
    """A dataset of this test's own."""
    return new_dataset(bq_emulator)


@pytest.fixture
def bq_url(bq_dataset: str) -> str:
    return f"bigquery://{PROJECT}/{bq_dataset}"


@pytest.fixture(scope="module")
def bq_private_emulator(bq_emulator: BigQueryEmulator) -> Iterator[BigQueryEmulator]:
    """An emulator of the module's own, for tests that send ``BEGIN`` / ``ROLLBACK TRANSACTION``:
    the emulator runs a ``BEGIN TRANSACTION`` job as one DuckDB transaction over the whole
    emulator, so a ``ROLLBACK TRANSACTION`` job undoes every other client's work since (datasets
    of other tests vanish: "Schema ... does not exist")."""
    with BigQueryEmulator(PROJECT) as emulator:
        yield emulator


@pytest.fixture
def bq_private_dataset(bq_private_emulator: BigQueryEmulator) -> tuple[str, str]:
    """A dataset of this test's own on ``bq_private_emulator``: its URL and the emulator's."""
    return f"bigquery://{PROJECT}/{new_dataset(bq_private_emulator)}", bq_private_emulator.url


@pytest.fixture
def bq_storage(bq_emulator: BigQueryEmulator) -> str:
    """The emulator's Storage Write API (gRPC, plain text), as ``storage_endpoint``."""
    return f"http://127.0.0.1:{bq_emulator.grpc_port}"


@pytest.fixture
def bq_proxy(bq_emulator: BigQueryEmulator) -> Iterator[RecordingProxy]:
    with RecordingProxy(bq_emulator.url) as proxy:
        yield proxy
