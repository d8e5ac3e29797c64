"""The generated dbt-spark profile (``method: session`` with ``SPARK_REMOTE``) with the real
dbt-spark: ``dbt debug``, then ``dbt run`` builds the fixture project's table and view through the
Connect server on the cluster, and the plugin reads them back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from floe_compute import create_plugin
from floe_compute.dbt import write_profiles

pytest_plugins = ["spark_connect_fixtures"]
pytestmark = [pytest.mark.spark_connect, pytest.mark.dbt, pytest.mark.slow]

PROJECT = Path(__file__).parents[2] / "fixtures" / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")

RAW_ORDERS = [
    "CREATE TABLE raw_orders (order_id INT, customer_id INT, amount DECIMAL(10, 2), status STRING)"
    " USING parquet",
    """INSERT INTO raw_orders VALUES
      (1, 1, 10.5, 'completed'), (2, 1, 20, 'completed'), (3, 2, 5, 'completed'), (4, 2, 7, 'cancelled'),
      (5, 3, 1, 'completed'), (6, 3, 2, 'completed'), (7, 3, 3, 'completed')""",
]


def dbt(command: str, tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    extra = [] if command == "debug" else ["--target-path", str(tmp_path / "target")]
    return subprocess.run(
        [str(DBT), command, "--project-dir", str(tmp_path / "project"),
         "--profiles-dir", str(tmp_path / "profiles"), "--no-version-check",
         "--no-send-anonymous-usage-stats", "--log-path", str(tmp_path / "logs"), *extra, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        timeout=600,
        check=False,
    )  # fmt: skip


def test_dbt_debug_and_run_build_the_models(connect_url: str, connect_db: str, tmp_path: Path) -> None:
    shutil.copytree(PROJECT, tmp_path / "project", ignore=shutil.ignore_patterns("target", "logs"))
    with create_plugin(connect_url, pool={"size": 2}) as plugin:
        for statement in RAW_ORDERS:
            plugin.execute(statement).close()
        profile = plugin.dbt_profile(profile="floe", target="dev")
        target = profile["floe"]["outputs"]["dev"]
        assert (target["type"], target["method"], target["schema"]) == ("spark", "session", connect_db)
        write_profiles(tmp_path / "profiles", profile)
        env = plugin.dbt_env()
        assert env["SPARK_REMOTE"].startswith("sc://127.0.0.1:")

        debug = dbt("debug", tmp_path, env)
        assert debug.returncode == 0, debug.stdout[-3000:]
        assert "All checks passed" in debug.stdout

        run = dbt("run", tmp_path, env, "--vars", f"{{raw_schema: {connect_db}}}")
        assert run.returncode == 0, run.stdout[-3000:]
        assert "PASS=2" in run.stdout

        with plugin.execute("SELECT * FROM orders_summary ORDER BY customer_id") as result:
            assert result.columns == ["customer_id", "order_count", "total_amount"]
            rows = [(c, n, float(t)) for c, n, t in result]
        assert rows == [(1, 2, 30.5), (2, 1, 5.0), (3, 3, 6.0)]
        with plugin.execute("SELECT customer_id FROM top_customers ORDER BY 1") as result:
            assert result.fetchall() == [(1,), (3,)]
