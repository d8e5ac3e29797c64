"""The lake's secrets (the S3 secret key and session token, the catalog's client secret) appear
nowhere: reprs, DEBUG logs, span attributes, error messages, ``floe-compute config``, the dbt
profile, and ``duckdb_secrets()`` run through the plugin (DuckDB redacts its secrets)."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from floe_compute import QueryError, create_plugin
from floe_compute.cli import main
from floe_compute.dbt import render_profiles

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures", "postgres_fixtures"]  # postgres_fixtures: the otel fixture
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]


def test_no_secret_of_the_lake_shows_anywhere(
    extension_dir: Path,
    s3_table: IcebergTableFixture,
    s3_rest_catalog: Any,
    s3_settings: dict[str, Any],
    client_secret: str,
    otel: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "session-token-" + client_secret.removeprefix("floe-secret-")
    secrets = (s3_settings["secret_key"], token, client_secret)
    lake = {"name": "lake", "endpoint": s3_rest_catalog.url, "warehouse": "w", "client_id": "floe"}
    lake |= {"client_secret": client_secret}
    # moto checks session tokens: the section with one is for another bucket, never called here
    other = {**s3_settings, "session_token": token, "scope": "s3://other-bucket"}
    target = {"extension_directory": str(extension_dir), "s3": other}
    target |= {"attach": [{**lake, "s3": {**s3_settings, "scope": "s3://lake/warehouse"}}]}
    plugin = create_plugin(name="secretive", **target)
    texts = [repr(plugin), repr(plugin.config), str(plugin.config), plugin.config.model_dump_json()]
    with plugin:
        count = "SELECT count(*), sum(id) FROM lake.ns.events"
        assert plugin.execute(count).fetchall() == [(s3_table.rows, s3_table.checksum)]
        shown = plugin.execute("SELECT name, secret_string FROM duckdb_secrets() ORDER BY name").fetchall()
        assert [name for name, _ in shown] == ["floe_lake_s3_secret", "floe_lake_secret", "floe_s3_secret"]
        for name, text in shown:
            assert ("secret=redacted" in text) or ("client_secret=redacted" in text), name
        texts += [repr(shown), repr(plugin.health_check())]
        with pytest.raises(QueryError) as failed:
            plugin.execute("SELECT * FROM lake.ns.no_such_table")
        texts += ["".join(traceback.format_exception(failed.value))]
    texts += [json.dumps([dict(s.attributes) for s in otel.finished_spans("secretive")], default=str)]
    assert otel.finished_spans("secretive"), "the queries made spans"
    texts += [render_profiles(plugin.dbt_profile())]

    manifest = tmp_path / "floe.yaml"
    targets = {"lake": {"url": "duckdb:///:memory:", **target}}
    manifest.write_text(yaml.safe_dump({"compute": {"default": "lake", "targets": targets}}))
    for form in ([], ["--json"]):
        capsys.readouterr()
        assert main(["config", "lake", "-m", str(manifest), *form]) == 0
        output = capsys.readouterr()
        texts += [output.out, output.err]
    resolved = json.loads(output.out)
    assert resolved["s3"]["session_token"] == resolved["attach"][0]["s3"]["secret_key"] == "**********"
    assert "floe_s3_secret" in render_profiles(plugin.dbt_profile())
    texts += [caplog.text]
    for text in texts:
        for secret in secrets:
            assert secret not in text
