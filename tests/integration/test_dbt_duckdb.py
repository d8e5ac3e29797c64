"""The generated dbt profile, accepted by the real dbt-duckdb: debug, run, and read the models back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from floe_compute import create_plugin
from floe_compute.dbt import write_profiles

PROJECT = Path(__file__).parents[2] / "fixtures" / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")

pytestmark = [pytest.mark.dbt, pytest.mark.slow]

RAW_ORDERS = """
CREATE TABLE raw_orders (order_id INTEGER, customer_id INTEGER, amount NUMERIC(10, 2), status VARCHAR(20));
INSERT INTO raw_orders VALUES
  (1, 1, 10.5, 'completed'), (2, 1, 20, 'completed'), (3, 2, 5, 'completed'), (4, 2, 7, 'cancelled'),
  (5, 3, 1, 'completed'), (6, 3, 2, 'completed'), (7, 3, 3, 'completed');
"""


def dbt(command: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    extra = [] if command == "debug" else ["--target-path", str(tmp_path / "target")]
    return subprocess.run(
        [
            str(DBT),
            command,
            "--project-dir",
            str(tmp_path / "project"),
            "--profiles-dir",
            str(tmp_path / "profiles"),
            "--no-version-check",
            "--no-send-anonymous-usage-stats",
            "--log-path",
            str(tmp_path / "logs"),
            *extra,
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        timeout=300,
        check=False,
    )


def test_dbt_debug_and_run_with_the_generated_profile(tmp_path: Path) -> None:
    shutil.copytree(PROJECT, tmp_path / "project", ignore=shutil.ignore_patterns("target", "logs"))
    database = tmp_path / "warehouse.duckdb"
    plugin = create_plugin(f"duckdb:///{database}", limits={"memory_limit": "1GB", "threads": 2})
    with plugin:
        for statement in RAW_ORDERS.strip().split(";\n"):
            plugin.execute(statement).close()
        profile = plugin.dbt_profile(profile="floe", target="dev")
    # dbt opens the file itself: the plugin has let go of it (DuckDB allows one writer process)
    write_profiles(tmp_path / "profiles", profile)

    debug = dbt("debug", tmp_path)
    assert debug.returncode == 0, debug.stdout[-3000:]
    assert "All checks passed" in debug.stdout

    run = dbt("run", tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "PASS=2" in run.stdout

    with plugin:
        with plugin.execute("SELECT * FROM orders_summary ORDER BY customer_id") as result:
            assert result.columns == ["customer_id", "order_count", "total_amount"]
            rows = [(c, n, float(t)) for c, n, t in result]
        assert rows == [(1, 2, 30.5), (2, 1, 5.0), (3, 3, 6.0)]
        top = plugin.execute("SELECT customer_id FROM top_customers ORDER BY 1").fetchall()
        assert top == [(1,), (3,)]
        settings = dict(
            plugin.execute("SELECT name, value FROM duckdb_settings() WHERE name = 'threads'").fetchall()
        )
        assert settings == {"threads": "2"}


def test_profile_carries_the_limits(tmp_path: Path) -> None:
    plugin = create_plugin(f"duckdb:///{tmp_path / 'x.duckdb'}", limits={"memory_limit": "1GB", "threads": 3})
    output = plugin.dbt_profile(profile="p", target="t")["p"]["outputs"]["t"]
    assert output["type"] == "duckdb"
    assert output["path"] == str(tmp_path / "x.duckdb")
    assert output["config_options"]["memory_limit"] == f"{10**9}B"
    assert output["config_options"]["threads"] == 3
    assert output["config_options"]["autoinstall_known_extensions"] is False
