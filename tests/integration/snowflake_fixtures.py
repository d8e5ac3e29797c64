"""The Snowflake emulator (fakesnow) for the Snowflake tests.

* ``fakesnow_server``: one server per test run, shared by the xdist workers (``make test`` runs
  two): the first worker that needs it starts it, and it stops when the last one finishes or dies
  (``fixtures.snowflake.shared_server``: a launcher process watches the workers, so a worker killed
  by the OOM killer or a CI timeout cannot leave it behind). Why not an ``xdist_group`` (every
  Snowflake test on one worker, which owns the server): with pytest 9.2 and pytest-xdist 3.8 here,
  ``--dist loadgroup`` does not keep a group on one worker (xdist tags the group onto
  ``item._nodeid``, which pytest 9.2 no longer reads: pytest-xdist issue 1386), so each worker
  would start a server of its own (200 MB, and seconds of a 2-core machine).
* ``snowflake_url``: a ``snowflake://`` URL with a database of the test's own (fakesnow keeps every
  database in one shared in-memory instance and creates a database at login).
* ``snowflake_endpoint``: the ``host``/``port``/``protocol`` overrides that reach the server.
* ``snowflake_proxy`` / ``proxied_endpoint``: a recording proxy in front of it, per test.

Without the tool environment (``make fakesnow``) the tests skip locally and fail in CI.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy
from fixtures.snowflake import (
    FakesnowNotInstalledError,
    FakesnowServer,
    LongQueries,
    find_fakesnow,
    shared_server,
)

from support import require, run_directory


@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[FakesnowServer]:
    require(
        importlib.util.find_spec("snowflake.sqlalchemy") is not None,
        "the snowflake extra is not installed (uv sync --all-extras)",
    )
    try:
        find_fakesnow()
    except FakesnowNotInstalledError as exc:
        require(False, str(exc))
        raise
    with shared_server(run_directory("fakesnow")) as server:
        yield server


@pytest.fixture
def snowflake_database() -> str:
    return f"db_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def snowflake_url(fakesnow_server: FakesnowServer, snowflake_database: str) -> str:
    return fakesnow_server.plugin_url(snowflake_database, "tests")


@pytest.fixture
def snowflake_endpoint(fakesnow_server: FakesnowServer) -> dict[str, Any]:
    return fakesnow_server.endpoint


@pytest.fixture
def snowflake_proxy(fakesnow_server: FakesnowServer) -> Iterator[RecordingProxy]:
    """A recording proxy in front of the emulator, for this test only."""
    with RecordingProxy(fakesnow_server.url) as proxy:
        yield proxy


@pytest.fixture
def proxied_endpoint(snowflake_proxy: RecordingProxy) -> dict[str, Any]:
    """The endpoint overrides that send the connector through ``snowflake_proxy``."""
    return {"host": "127.0.0.1", "port": snowflake_proxy.port, "protocol": "http"}


@pytest.fixture
def long_queries(snowflake_proxy: RecordingProxy) -> Iterator[LongQueries]:
    stand_in = LongQueries(snowflake_proxy)
    yield stand_in
    stand_in.stop()
