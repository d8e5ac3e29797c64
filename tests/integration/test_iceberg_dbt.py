"""dbt with the generated profile reads Iceberg: by metadata file and through the attached catalog."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from floe_compute import create_plugin
from floe_compute.dbt import render_profiles, write_profiles

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.dbt, pytest.mark.slow, pytest.mark.xdist_group("iceberg")]

PROJECT = Path(__file__).parents[2] / "fixtures" / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
SECRET_VAR = "DBT_ENV_SECRET_FLOE_LAKE_CLIENT_SECRET"


def test_profile_carries_extension_directory_and_catalog_but_no_secret(
    extension_dir: Path, lake: dict[str, Any], client_secret: str, tmp_path: Path
) -> None:
    directory = tmp_path / "ext"  # empty: dbt_profile() fills it, the plugin never connects
    plugin = create_plugin(f"duckdb:///{tmp_path / 'w.duckdb'}", extension_directory=directory, attach=[lake])
    target = plugin.dbt_profile()["floe"]["outputs"]["dev"]
    assert target["config_options"]["extension_directory"] == str(directory)
    assert target["config_options"]["autoinstall_known_extensions"] is False
    assert "extensions" not in target  # dbt-duckdb's key would INSTALL, that is download
    assert target["secrets"] == [
        {
            "type": "iceberg",
            "name": "floe_lake_secret",
            "client_id": "floe",
            "client_secret": f"{{{{ env_var('{SECRET_VAR}') }}}}",
            "oauth2_server_uri": f"{lake['endpoint']}/v1/oauth/tokens",
        }
    ]
    assert target["attach"] == [
        {
            "path": "warehouse",
            "alias": "lake",
            "type": "iceberg",
            "read_only": False,
            "secret": "floe_lake_secret",
            "options": {"endpoint": lake["endpoint"]},
        }
    ]
    assert client_secret not in render_profiles(plugin.dbt_profile())
    assert plugin.dbt_env() == {SECRET_VAR: client_secret}
    assert {p.name for p in directory.rglob("*.duckdb_extension")} == {
        "avro.duckdb_extension",
        "iceberg.duckdb_extension",
        "httpfs.duckdb_extension",
    }


def _expected(table: IcebergTableFixture) -> list[tuple[str, int, int]]:
    groups: dict[str, list[int]] = {}
    for i in range(table.rows):
        groups.setdefault(f"c{i % 7}", []).append(i)
    return [(category, len(ids), sum(ids)) for category, ids in sorted(groups.items())]


def _dbt_run(plugin: Any, table: IcebergTableFixture, tmp_path: Path, *, env: dict[str, str]) -> str:
    """``dbt run`` of the Iceberg models with the plugin's profile; checks the models' rows."""
    if not DBT.exists():
        pytest.fail(f"dbt is not installed next to {sys.executable} (make env)")
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    with plugin:  # creates the file; dbt needs it released before it opens it
        pass
    write_profiles(tmp_path / "profiles", plugin.dbt_profile())
    variables = f"{{iceberg_path: '{table.metadata_location}', iceberg_table: lake.ns.events}}"
    run = subprocess.run(
        [
            str(DBT),
            "run",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(tmp_path / "profiles"),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
            "--no-version-check",
            "--no-send-anonymous-usage-stats",
            "--select",
            "path:models/iceberg",
            "--vars",
            variables,
        ],
        capture_output=True,
        text=True,
        env={**env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **plugin.dbt_env()},
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "PASS=2" in run.stdout
    expected = _expected(table)
    with plugin:
        for model in ("lake_events", "lake_catalog_events"):
            with plugin.execute(f"SELECT category, events, id_sum FROM {model} ORDER BY category") as result:
                assert [(c, int(n), int(s)) for c, n, s in result] == expected
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*") if p.is_file())
    return "\n".join((run.stdout, run.stderr, logs, (tmp_path / "profiles" / "profiles.yml").read_text()))


def test_dbt_run_reads_iceberg_and_the_plugin_reads_the_models_back(
    extension_dir: Path,
    iceberg_table: IcebergTableFixture,
    lake: dict[str, Any],
    client_secret: str,
    tmp_path: Path,
) -> None:
    plugin = create_plugin(
        f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        extensions=["iceberg", "httpfs"],
        extension_directory=extension_dir,
        attach=[lake],
    )
    output = _dbt_run(plugin, iceberg_table, tmp_path, env=dict(os.environ))
    assert client_secret not in output


S3_VARS = ("DBT_ENV_SECRET_FLOE_S3_SECRET", "DBT_ENV_SECRET_FLOE_S3_SESSION_TOKEN")


def test_profile_for_a_lake_on_s3_references_every_secret(
    extension_dir: Path, s3_rest_catalog: Any, s3_settings: dict[str, Any], client_secret: str, tmp_path: Path
) -> None:
    token = "session-token-" + client_secret  # random too
    lake = {"name": "lake", "endpoint": s3_rest_catalog.url, "warehouse": "w", "client_id": "floe"}
    lake |= {"client_secret": client_secret}
    s3 = {**s3_settings, "session_token": token}
    plugin = create_plugin(extension_directory=extension_dir, s3=s3, attach=[lake])
    target = plugin.dbt_profile()["floe"]["outputs"]["dev"]
    assert target["secrets"][1] == {
        "type": "s3",
        "name": "floe_s3_secret",
        "provider": "config",
        "endpoint": s3_settings["endpoint"].removeprefix("http://"),
        "use_ssl": "false",
        "region": "us-east-1",
        "url_style": "path",
        "key_id": s3_settings["key_id"],
        "secret": f"{{{{ env_var('{S3_VARS[0]}') }}}}",
        "session_token": f"{{{{ env_var('{S3_VARS[1]}') }}}}",
    }
    assert plugin.dbt_env() == {SECRET_VAR: client_secret, S3_VARS[0]: s3["secret_key"], S3_VARS[1]: token}
    rendered = render_profiles(plugin.dbt_profile())
    for secret in (client_secret, s3["secret_key"], token):
        assert secret not in rendered


def test_dbt_run_reads_iceberg_on_s3(
    extension_dir: Path,
    s3_table: IcebergTableFixture,
    s3_rest_catalog: Any,
    s3_settings: dict[str, Any],
    client_secret: str,
    tmp_path: Path,
) -> None:
    lake = {"name": "lake", "endpoint": s3_rest_catalog.url, "warehouse": "w", "client_id": "floe"}
    lake |= {"client_secret": client_secret}
    plugin = create_plugin(
        f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        extension_directory=extension_dir,
        s3=s3_settings,
        attach=[lake],
    )
    # no AWS_* variables: the keys can only come from the profile's secret
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    output = _dbt_run(plugin, s3_table, tmp_path, env=env)
    assert s3_table.metadata_location.startswith("s3://")
    for secret in (client_secret, s3_settings["secret_key"]):
        assert secret not in output
