"""The BigQuery emulator, datasets on it, and the recording proxy in front of it.

* ``bq_emulator``: one ``bqemulator`` per test session, stopped at the end (also on failure or
  Ctrl-C: the fixture's finalizer, and ``atexit`` in the launcher). Every BigQuery test module is
  marked ``xdist_group("bigquery")``, so with ``--dist loadgroup`` they all run in one xdist worker
  and that worker's session owns the one emulator. Why a group rather than a file lock shared by
  the workers: the emulator runs one query at a time, so a second worker would only queue behind
  the first, and with a group the process that starts the emulator is the one that stops it, with
  no cross-process reference counting that a crashed worker could leave wrong.
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
from fixtures.bigquery import BigQueryEmulator, EmulatorNotInstalledError
from fixtures.recording_proxy import RecordingProxy

from support import require


@pytest.fixture(scope="session")
def bq_emulator() -> Iterator[BigQueryEmulator]:
    require(
        importlib.util.find_spec("sqlalchemy_bigquery") is not None,
        "sqlalchemy-bigquery is not installed (uv sync --all-extras)",
    )
    try:
        emulator = BigQueryEmulator(PROJECT)
    except EmulatorNotInstalledError as exc:
        require(False, str(exc))
        raise
    emulator.start()
    yield emulator
    emulator.stop()


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


@pytest.fixture
def bq_proxy(bq_emulator: BigQueryEmulator) -> Iterator[RecordingProxy]:
    with RecordingProxy(bq_emulator.url) as proxy:
        yield proxy
