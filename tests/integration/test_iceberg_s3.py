"""Iceberg tables on object storage: written by pyiceberg to S3 (moto on 127.0.0.1, checking every
signature), read by the plugin by metadata file and through the REST catalog, with the keys from
the config, from the environment, or vended by the catalog with the table."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from floe_compute import ConfigError, ConnectionFailedError, create_plugin

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]

CLIENT_ID = "floe"


def _catalog(server: Any, client_secret: str, **more: Any) -> dict[str, Any]:
    return {"name": "lake", "endpoint": server.url, "warehouse": "w", "client_id": CLIENT_ID} | {
        "client_secret": client_secret,
        **more,
    }


def _reads(plugin: Any, table: IcebergTableFixture) -> None:
    """The table by metadata file and through the catalog, now and at its first snapshot."""
    scan = f"iceberg_scan('{table.metadata_location}')"
    first = f"iceberg_scan('{table.metadata_location}', snapshot_from_id = {table.first_snapshot_id})"
    travel = f"lake.ns.events AT (VERSION => {table.first_snapshot_id})"
    expected = {
        scan: (table.rows, table.checksum),
        first: (table.first_rows, table.first_checksum),
        "lake.ns.events": (table.rows, table.checksum),
        travel: (table.first_rows, table.first_checksum),
    }
    for source, counts in expected.items():
        assert plugin.execute(f"SELECT count(*), sum(id) FROM {source}").fetchall() == [counts], source


def test_s3_table_is_read_on_every_pooled_connection_with_the_configured_keys(
    extension_dir: Path,
    s3_table: IcebergTableFixture,
    s3_rest_catalog: Any,
    s3_settings: dict[str, Any],
    client_secret: str,
) -> None:
    assert s3_table.metadata_location.startswith("s3://lake/warehouse/ns/events/metadata/")
    plugin = create_plugin(
        extension_directory=extension_dir,
        s3=s3_settings,
        attach=[_catalog(s3_rest_catalog, client_secret)],
        pool={"size": 2, "max_overflow": 2},
    )
    workers = 4  # more than the pool size: overflow connections come after the secrets are made
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    results: list[Any] = []

    def read(source: str) -> None:
        try:
            with plugin.execute(f"SELECT count(*), sum(id) FROM {source}") as result:
                barrier.wait(timeout=60)  # four connections checked out at once
                results.append(result.fetchall())
        except BaseException as exc:
            errors.append(exc)

    with plugin:
        sources = [f"iceberg_scan('{s3_table.metadata_location}')", "lake.ns.events"] * 2
        threads = [threading.Thread(target=read, args=(source,)) for source in sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert results == [[(s3_table.rows, s3_table.checksum)]] * workers
        assert plugin.pool_stats().connects >= workers
        _reads(plugin, s3_table)


def test_keys_per_attached_catalog_by_scope(
    extension_dir: Path,
    s3_table: IcebergTableFixture,
    s3_rest_catalog: Any,
    s3_settings: dict[str, Any],
    client_secret: str,
) -> None:
    scoped = {**s3_settings, "scope": "s3://lake/warehouse"}
    catalog = _catalog(s3_rest_catalog, client_secret, s3=scoped)
    with create_plugin(extension_directory=extension_dir, attach=[catalog]) as plugin:
        _reads(plugin, s3_table)
        secrets = dict(
            plugin.execute("SELECT name, scope FROM duckdb_secrets() WHERE type = 's3'").fetchall()
        )
        assert secrets == {"floe_lake_s3_secret": ["s3://lake/warehouse"]}


def test_keys_from_the_environment_through_the_credential_chain(
    extension_dir: Path,
    s3_server: Any,
    s3_table: IcebergTableFixture,
    s3_rest_catalog: Any,
    client_secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.keys.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.keys.secret_key)
    s3 = {"provider": "credential_chain", "chain": "env", "endpoint": s3_server.endpoint}
    s3 |= {"region": "us-east-1", "url_style": "path"}
    attach = [_catalog(s3_rest_catalog, client_secret)]
    with create_plugin(extension_directory=extension_dir, s3=s3, attach=attach) as plugin:
        _reads(plugin, s3_table)
    with pytest.raises(ConfigError, match="credential_chain finds the keys itself"):
        create_plugin(s3={**s3, "key_id": "AKIA"})


def test_credentials_vended_by_the_catalog_are_used(
    extension_dir: Path, s3_server: Any, s3_table: IcebergTableFixture, client_secret: str
) -> None:
    from fixtures.iceberg_rest import IcebergRestServer

    vended = s3_server.pyiceberg_properties(s3_server.keys)  # the spec's names: s3.access-key-id...
    catalog = s3_table.catalog()
    # where S3 is, with a key the server refuses: only the vended one can read the table
    wrong = {"endpoint": s3_server.endpoint, "region": "us-east-1", "url_style": "path"}
    wrong |= {"key_id": s3_server.keys.key_id, "secret_key": "wrong-secret-key"}
    with IcebergRestServer(
        catalog, client_id=CLIENT_ID, client_secret=client_secret, vended=vended
    ) as server:
        attach = [_catalog(server, client_secret)]
        with create_plugin(extension_directory=extension_dir, s3=wrong, attach=attach) as plugin:
            count = "SELECT count(*), sum(id) FROM lake.ns.events"
            assert plugin.execute(count).fetchall() == [(s3_table.rows, s3_table.checksum)]
            made = plugin.execute("SELECT provider, scope FROM duckdb_secrets() WHERE type = 's3'").fetchall()
            assert sorted(made) == [
                ("config", ["s3://", "s3n://", "s3a://"]),
                ("iceberg", ["s3://lake/warehouse/ns/events/"]),  # the vended one, for the table
            ]
    # the same catalog vending nothing: the reads are refused (unsigned requests), naming the bucket
    with IcebergRestServer(catalog, client_id=CLIENT_ID, client_secret=client_secret) as server:
        attach = [_catalog(server, client_secret)]
        refused = pytest.raises(ConnectionFailedError, match="S3 refused the credentials for bucket 'lake'")
        with create_plugin(extension_directory=extension_dir, s3=wrong, attach=attach) as plugin, refused:
            plugin.execute("SELECT count(*) FROM lake.ns.events")
