"""The generated dbt-databricks profile with the real dbt-databricks (its own tool environment,
run with the connector shim) against the HTTP-mode Spark Thrift Server: ``dbt debug`` passes.
(``dbt run`` needs Unity Catalog's ``system.information_schema``, which Spark does not have.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from databricks_fixtures import TOKEN, databricks_overrides

from floe_compute import create_plugin
from floe_compute.dbt import write_profiles
from support import require

pytest_plugins = ["databricks_fixtures"]
pytestmark = [pytest.mark.databricks, pytest.mark.dbt, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
TOOL_PYTHON = ROOT / ".tools" / "dbt-databricks" / "bin" / "python"


def test_dbt_debug_passes_with_the_generated_profile(
    databricks_server: Any, databricks_url: str, databricks_db: str, tmp_path: Path
) -> None:
    require(TOOL_PYTHON.is_file(), f"{TOOL_PYTHON} is missing: run `make dbt-databricks`")
    plugin = create_plugin(databricks_url, **databricks_overrides(databricks_server))
    profile = plugin.dbt_profile(profile="floe", target="dev")
    target = profile["floe"]["outputs"]["dev"]
    assert (target["type"], target["schema"], target["catalog"]) == (
        "databricks",
        databricks_db,
        "spark_catalog",
    )
    assert TOKEN not in str(profile)  # only env_var() in the file
    write_profiles(tmp_path / "profiles", profile)
    shutil.copytree(
        ROOT / "fixtures" / "dbt_project",
        tmp_path / "project",
        ignore=shutil.ignore_patterns("target", "logs"),
    )

    debug = subprocess.run(
        [str(TOOL_PYTHON), "-m", "fixtures.databricks", "debug",
         "--project-dir", str(tmp_path / "project"), "--profiles-dir", str(tmp_path / "profiles"),
         "--no-version-check", "--no-send-anonymous-usage-stats", "--log-path", str(tmp_path / "logs")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **plugin.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        timeout=600,
        check=False,
    )  # fmt: skip
    assert debug.returncode == 0, debug.stdout[-3000:] + debug.stderr[-3000:]
    assert "OK connection ok" in debug.stdout
    assert "All checks passed" in debug.stdout
    assert TOKEN not in debug.stdout + debug.stderr
