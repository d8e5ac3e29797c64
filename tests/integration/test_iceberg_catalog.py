"""An Iceberg REST catalog attached at connect time: every pooled connection and thread sees it,
its credentials reach DuckDB only through a secret, and no message ever shows them."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from floe_compute import ConfigError, ConnectionFailedError, create_plugin
from floe_compute.dbt import render_profiles

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]

COUNT = "SELECT count(*), sum(id) FROM lake.ns.events"


def test_catalog_is_attached_for_every_pooled_connection_and_thread(
    extension_dir: Path, iceberg_table: IcebergTableFixture, lake: dict[str, Any]
) -> None:
    plugin = create_plugin(
        extension_directory=extension_dir, attach=[lake], pool={"size": 3, "max_overflow": 3}
    )
    workers = 6  # more than the pool size: overflow connections are created after the ATTACH
    barrier = threading.Barrier(workers)
    results: list[Any] = []
    errors: list[BaseException] = []

    def query() -> None:
        try:
            with plugin.execute(COUNT) as result:
                barrier.wait(timeout=30)  # all six connections are checked out at once
                results.append(result.fetchall())
        except BaseException as exc:
            errors.append(exc)

    with plugin:
        threads = [threading.Thread(target=query) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert results == [[(iceberg_table.rows, iceberg_table.checksum)]] * workers
        assert plugin.pool_stats().connects >= workers
        travel = f"{COUNT} AT (VERSION => {iceberg_table.first_snapshot_id})"
        assert plugin.execute(travel).fetchall() == [(iceberg_table.first_rows, iceberg_table.first_checksum)]
    # a reconnect opens a new database: the catalog is attached again
    with plugin:
        assert plugin.execute(COUNT).fetchall() == [(iceberg_table.rows, iceberg_table.checksum)]


def test_catalog_with_a_token(
    extension_dir: Path, iceberg_table: IcebergTableFixture, rest_catalog: Any
) -> None:
    token = rest_catalog.issue_token()
    catalog = {"name": "lake", "endpoint": rest_catalog.url, "warehouse": "w", "token": token}
    with create_plugin(extension_directory=extension_dir, attach=[catalog]) as plugin:
        assert plugin.execute(COUNT).fetchall() == [(iceberg_table.rows, iceberg_table.checksum)]


def test_catalog_without_credentials(extension_dir: Path, iceberg_table: IcebergTableFixture) -> None:
    from fixtures.iceberg_rest import IcebergRestServer

    with IcebergRestServer(iceberg_table.catalog()) as open_server:
        catalog = {"name": "lake", "endpoint": open_server.url, "warehouse": "w", "read_only": True}
        with create_plugin(extension_directory=extension_dir, attach=[catalog]) as plugin:
            assert plugin.execute(COUNT).fetchall() == [(iceberg_table.rows, iceberg_table.checksum)]
        assert ("GET", "/v1/config?warehouse=w", 200) in open_server.requests


def test_catalog_from_a_manifest_reads_its_secret_from_the_environment(
    extension_dir: Path,
    iceberg_table: IcebergTableFixture,
    lake: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAKE_CLIENT_SECRET", lake["client_secret"])
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "compute": {
                    "default": "lake",
                    "targets": {
                        "lake": {
                            "url": "duckdb:///:memory:",
                            "extensions": ["iceberg", "httpfs"],
                            "extension_directory": str(extension_dir),
                            "attach": [{**lake, "client_secret": "${LAKE_CLIENT_SECRET}"}],
                        }
                    },
                }
            }
        )
    )
    with create_plugin(manifest=manifest) as plugin:
        assert plugin.execute(COUNT).fetchall() == [(iceberg_table.rows, iceberg_table.checksum)]


def _stopped_endpoint() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_unreachable_catalog_is_a_connection_error_naming_the_endpoint(
    extension_dir: Path, lake: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = _stopped_endpoint()
    plugin = create_plugin(extension_directory=extension_dir, attach=[{**lake, "endpoint": endpoint}])
    with pytest.raises(ConnectionFailedError) as caught:
        plugin.connect()
    message = str(caught.value)
    assert f"cannot attach Iceberg catalog 'lake' at {endpoint}" in message
    assert f"Could not get token from {endpoint}/v1/oauth/tokens" in message
    _assert_hidden(lake["client_secret"], caught.value, plugin, caplog.text)
    assert not plugin.connected

    # without credentials the first call is the catalog's config endpoint
    open_catalog = {"name": "lake", "endpoint": endpoint, "warehouse": "w"}
    with pytest.raises(ConnectionFailedError, match=f"Could not connect to server .*{endpoint}/v1/config"):
        create_plugin(extension_directory=extension_dir, attach=[open_catalog]).connect()


def test_wrong_credentials_are_a_connection_error_without_the_secret(
    extension_dir: Path, lake: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = {**lake, "client_secret": "wrong-" + lake["client_secret"]}
    plugin = create_plugin(extension_directory=extension_dir, attach=[wrong])
    with pytest.raises(ConnectionFailedError, match=r"Unauthorized_401.*bad client credentials") as caught:
        plugin.connect()
    assert lake["endpoint"] in str(caught.value)
    _assert_hidden(wrong["client_secret"], caught.value, plugin, caplog.text)


def test_catalog_going_down_after_attach_is_a_connection_error(
    extension_dir: Path, iceberg_table: IcebergTableFixture
) -> None:
    # a separate process, so stopping it closes every connection DuckDB keeps alive to it
    script = Path(__file__).resolve().parents[2] / "fixtures" / "iceberg_rest.py"
    args = ["--uri", iceberg_table.catalog_uri, "--warehouse", iceberg_table.warehouse]
    server = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        endpoint = server.stdout.readline().strip()
        catalog = {"name": "lake", "endpoint": endpoint, "warehouse": "w"}
        with create_plugin(extension_directory=extension_dir, attach=[catalog]) as plugin:
            assert plugin.execute(COUNT).fetchall() == [(iceberg_table.rows, iceberg_table.checksum)]
            server.terminate()
            server.wait(timeout=10)
            with pytest.raises(
                ConnectionFailedError, match=f"Iceberg catalog 'lake' at {endpoint} is unreachable"
            ):
                plugin.execute(COUNT)
            assert plugin.execute("SELECT 1").fetchall() == [(1,)]
    finally:
        server.kill()
        server.wait(timeout=10)


def _assert_hidden(secret: str, error: BaseException, plugin: Any, log_text: str) -> None:
    seen = [str(error), repr(error), repr(plugin), repr(plugin.config), log_text]
    cause = error.__cause__
    while cause is not None:
        seen.append(str(cause))
        cause = cause.__cause__
    for text in seen:
        assert secret not in text


def test_secret_never_shows(
    extension_dir: Path, lake: dict[str, Any], client_secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = create_plugin(extension_directory=extension_dir, attach=[lake], name="lake")
    with plugin:
        plugin.execute(COUNT).fetchall()
        # DuckDB itself redacts the secret's values
        secrets = plugin.execute("SELECT name, secret_string FROM duckdb_secrets()").fetchall()
        assert [name for name, _ in secrets] == ["floe_lake_secret"]
        assert "client_secret=redacted" in secrets[0][1]
        health = plugin.health_check()
    texts = [
        repr(plugin),
        repr(plugin.config),
        str(plugin.config),
        plugin.config.model_dump_json(),
        repr(plugin.config.model_dump()),
        repr(health),
        caplog.text,
        render_profiles(plugin.dbt_profile()),
    ]
    for text in texts:
        assert client_secret not in text
    assert "attached Iceberg catalog 'lake'" in caplog.text


def test_catalog_config_is_validated(lake: dict[str, Any], client_secret: str) -> None:
    cases = {
        "give client_id and client_secret together": {**lake, "client_id": None},
        "either token or client_id/client_secret": {**lake, "token": "t"},
        "http:// or https://": {**lake, "endpoint": "127.0.0.1:8181"},
        "reserved by DuckDB": {**lake, "name": "main"},
        "name": {**lake, "name": "lake; DROP"},
    }
    for expected, catalog in cases.items():
        with pytest.raises(ConfigError, match=expected) as caught:
            create_plugin(attach=[catalog])
        assert client_secret not in str(caught.value)
    with pytest.raises(ConfigError, match="unique"):
        create_plugin(attach=[lake, lake])
