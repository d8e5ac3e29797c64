"""The Snowflake emulator (fakesnow) for the Snowflake tests.

* ``fakesnow_server``: one server per test session, started on first use and stopped at the end.
  Every Snowflake test module carries ``pytest.mark.xdist_group("snowflake")``, so that under
  ``pytest -n 2 --dist loadgroup`` (``make test``) they all run on the same worker and that
  worker's session owns the one server. Why not a file lock and a state file shared by both
  workers: whichever worker finishes last would have to stop a process another one started, and a
  crashed worker would leave it running; fakesnow runs one statement at a time anyway, so a second
  worker would only wait on it.
* ``snowflake_url``: a ``snowflake://`` URL with a database of the test's own (fakesnow keeps every
  database in one shared in-memory instance and creates a database at login).
* ``snowflake_endpoint``: the ``host``/``port``/``protocol`` overrides that reach the server.

Without the tool environment (``make fakesnow``) the tests skip locally and fail in CI.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy
from fixtures.snowflake import FakesnowNotInstalledError, FakesnowServer, LongQueries

from support import require


@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[FakesnowServer]:
    require(
        importlib.util.find_spec("snowflake.sqlalchemy") is not None,
        "the snowflake extra is not installed (uv sync --all-extras)",
    )
    try:
        server = FakesnowServer()
    except FakesnowNotInstalledError as exc:
        require(False, str(exc))
        raise
    server.start()
    yield server
    server.cleanup()


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
