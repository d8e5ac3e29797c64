"""The generated BigQuery profile passes the real dbt-bigquery ``dbt debug`` and ``dbt run`` of the
fixture project against the emulator (dbt-bigquery lives in its own tool environment)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bigquery_support import PROJECT, bigquery_tests

from floe_compute import create_plugin
from floe_compute.dbt import write_profiles
from support import require

pytest_plugins = ["bigquery_fixtures"]
pytestmark = [*bigquery_tests, pytest.mark.dbt, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
DBT = Path(os.environ.get("FLOE_DBT_BIGQUERY_ENV") or ROOT / ".tools" / "dbt-bigquery") / "bin" / "dbt"


def dbt(command: str, project: Path, profiles: Path, env: dict[str, str], *extra: str) -> Any:
    args = [str(DBT), command, "--no-version-check", "--project-dir", str(project),
            "--profiles-dir", str(profiles), "--log-path", str(project / "logs"), *extra]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, check=False)


@pytest.mark.timeout(1200)  # two dbt processes on a shared, loaded machine
def test_dbt_debug_and_run_on_the_emulator(bq_emulator: Any, bq_dataset: str, tmp_path: Path) -> None:
    require(
        DBT.is_file(), f"dbt-bigquery not found at {DBT}; build it with `make .tools/dbt-bigquery/.synced`"
    )
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "fixtures" / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs")
    )
    url = f"bigquery://{PROJECT}/{bq_dataset}"
    with create_plugin(url, api_endpoint=bq_emulator.url, timeouts={"query": 120}) as bq:
        bq.execute(
            "CREATE TABLE raw_orders (order_id INT64, customer_id INT64, amount NUMERIC, status STRING)"
        ).close()
        bq.execute(
            "INSERT INTO raw_orders VALUES (1,1,10.5,'completed'),(2,1,20,'completed'),(3,2,5,'completed'),"
            "(4,2,7,'cancelled'),(5,3,1,'completed'),(6,3,2,'completed'),(7,3,3,'completed')"
        ).close()
        profile = bq.dbt_profile(profile="floe", target="dev")
        write_profiles(tmp_path / "profiles", profile)
        env = {**os.environ, **bq.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        debug = dbt("debug", project, tmp_path / "profiles", env)
        assert debug.returncode == 0, debug.stdout[-3000:]
        assert "All checks passed" in debug.stdout
        run = dbt(
            "run", project, tmp_path / "profiles", env, "--vars", json.dumps({"raw_schema": bq_dataset})
        )
        assert run.returncode == 0, run.stdout[-3000:]
        with bq.execute(
            "SELECT customer_id, order_count, total_amount FROM top_customers ORDER BY 1"
        ) as result:
            rows = [(c, n, float(t)) for c, n, t in result.fetchall()]
    assert rows == [(1, 2, 30.5), (3, 3, 6.0)]
