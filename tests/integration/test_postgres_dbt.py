"""The generated PostgreSQL profile passes the real dbt-postgres ``dbt debug``; the password is an
``env_var()`` reference, never written to the file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from floe_compute import create_plugin
from floe_compute.dbt import write_profiles

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer

pytest_plugins = ["postgres_fixtures"]
pytestmark = [pytest.mark.postgres, pytest.mark.dbt, pytest.mark.slow]

PROJECT = Path(__file__).parents[2] / "fixtures" / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")


def test_dbt_debug_passes_with_the_generated_profile(pg_server: PostgresServer, tmp_path: Path) -> None:
    shutil.copytree(PROJECT, tmp_path / "project", ignore=shutil.ignore_patterns("target", "logs"))
    plugin = create_plugin(pg_server.url(), dbt_password_env="FLOE_TEST_PG_PASSWORD", pool={"size": 2})
    profile = plugin.dbt_profile(profile="floe", target="dev")
    path = write_profiles(tmp_path / "profiles", profile)
    text = path.read_text()
    assert pg_server.password not in text
    assert profile["floe"]["outputs"]["dev"]["password"] == "{{ env_var('FLOE_TEST_PG_PASSWORD') }}"

    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    assert plugin.dbt_env() == {"FLOE_TEST_PG_PASSWORD": pg_server.password}
    env.update(plugin.dbt_env(), DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    args = [str(DBT), "debug", "--no-version-check", "--project-dir", str(tmp_path / "project"),
            "--profiles-dir", str(tmp_path / "profiles"), "--log-path", str(tmp_path / "logs")]  # fmt: skip
    debug = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert debug.returncode == 0, debug.stdout[-3000:]
    assert "All checks passed" in debug.stdout

    del env["FLOE_TEST_PG_PASSWORD"]  # the reference is really what dbt used
    missing = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert missing.returncode != 0


def test_profile_fields() -> None:
    plugin = create_plugin(
        "postgresql+psycopg://analyst:pw@db.internal:6432/warehouse?sslmode=require",
        dbt_schema="analytics",
        pool={"size": 6},
        timeouts={"connect": 7},
    )
    output = plugin.dbt_profile()["floe"]["outputs"]["dev"]
    assert output == {
        "type": "postgres",
        "host": "db.internal",
        "port": 6432,
        "user": "analyst",
        "password": "{{ env_var('PGPASSWORD') }}",
        "dbname": "warehouse",
        "schema": "analytics",
        "threads": 6,
        "connect_timeout": 7,
        "sslmode": "require",
    }
