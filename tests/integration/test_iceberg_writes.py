"""Writes through the attached REST catalog: DuckDB's CREATE TABLE AS and INSERT land as Iceberg
snapshots that pyiceberg (another engine) reads back, and a commit the catalog refuses because
the table changed meanwhile is a QueryError naming the table."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest

from floe_compute import QueryError, create_plugin

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]


def _lake(server: Any, client_secret: str) -> dict[str, Any]:
    return {"name": "lake", "endpoint": server.url, "warehouse": "w", "client_id": "floe"} | {
        "client_secret": client_secret
    }


def _rows(table: Any) -> list[tuple[int, str]]:
    arrow = table.refresh().scan().to_arrow().sort_by("id")
    return list(zip(arrow["id"].to_pylist(), arrow["label"].to_pylist(), strict=True))


def test_create_table_as_and_insert_land_as_snapshots_pyiceberg_reads(
    extension_dir: Path,
    s3_table: IcebergTableFixture,
    s3_rest_catalog: Any,
    s3_settings: dict[str, Any],
    client_secret: str,
) -> None:
    name = f"written_{secrets.token_hex(3)}"
    attach = [_lake(s3_rest_catalog, client_secret)]
    with create_plugin(extension_directory=extension_dir, s3=s3_settings, attach=attach) as plugin:
        plugin.execute(
            f"CREATE TABLE lake.ns.{name} AS SELECT id, category AS label FROM lake.ns.events WHERE id < 100"
        ).close()
        plugin.execute(f"INSERT INTO lake.ns.{name} VALUES (100000, 'late'), (100001, 'later')").close()
        assert plugin.execute(f"SELECT count(*), sum(id) FROM lake.ns.{name}").fetchall() == [
            (102, sum(range(100)) + 200001)
        ]
    table = s3_table.catalog().load_table(f"ns.{name}")
    assert table.location().startswith("s3://lake/warehouse/ns/")
    assert len(table.snapshots()) == 2  # one per statement
    expected = [(i, f"c{i % 7}") for i in range(100)] + [(100000, "late"), (100001, "later")]
    assert _rows(table) == expected
    first = table.scan(snapshot_id=table.snapshots()[0].snapshot_id).to_arrow()
    assert first.num_rows == 100


def test_commit_of_a_table_changed_meanwhile_is_refused_naming_it(
    extension_dir: Path,
    s3_table: IcebergTableFixture,
    s3_rest_catalog: Any,
    s3_settings: dict[str, Any],
    client_secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    name = f"contested_{secrets.token_hex(3)}"
    other = s3_table.catalog()
    schema = pa.schema([("id", pa.int64()), ("label", pa.string())])
    table = other.create_table(f"ns.{name}", schema=schema)
    table.append(pa.table({"id": [1], "label": ["first"]}, schema=schema))

    def another_writer_first(identifier: tuple[str, ...]) -> None:
        s3_rest_catalog.before_commit = None  # once
        other.load_table(identifier).append(pa.table({"id": [2], "label": ["other"]}, schema=schema))

    attach = [_lake(s3_rest_catalog, client_secret)]
    with create_plugin(extension_directory=extension_dir, s3=s3_settings, attach=attach) as plugin:
        s3_rest_catalog.before_commit = another_writer_first
        try:
            with pytest.raises(QueryError) as caught:
                plugin.execute(f"INSERT INTO lake.ns.{name} VALUES (3, 'mine')").close()
        finally:
            s3_rest_catalog.before_commit = None
        message = str(caught.value)
        assert "Iceberg catalog 'lake' refused the commit" in message
        assert f"(writing lake.ns.{name})" in message
        assert ("POST", "/v1/transactions/commit", 409) in s3_rest_catalog.requests
        assert _rows(table) == [(1, "first"), (2, "other")]  # nothing of the refused commit
        # run again, it reads the new snapshot and commits
        plugin.execute(f"INSERT INTO lake.ns.{name} VALUES (3, 'mine')").close()
    assert _rows(table) == [(1, "first"), (2, "other"), (3, "mine")]
    for text in (message, repr(caught.value.__cause__), caplog.text):
        assert s3_settings["secret_key"] not in text
        assert client_secret not in text
