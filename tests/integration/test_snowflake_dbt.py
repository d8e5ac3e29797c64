"""The generated Snowflake profile drives the real dbt-snowflake (its own tool environment,
``make dbt-snowflake``) against the emulator: ``dbt debug`` and ``dbt run`` of fixtures/dbt_project,
read back through the plugin. The password reaches dbt only through ``env_var()``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy
from fixtures.snowflake import LOGIN_REQUEST, QUERY_REQUEST, FakesnowServer

from floe_compute import create_plugin
from floe_compute.dbt import write_profiles
from support import require

pytest_plugins = ["snowflake_fixtures"]
pytestmark = [pytest.mark.snowflake, pytest.mark.dbt, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
PROJECT = ROOT / "fixtures" / "dbt_project"
DBT = ROOT / ".tools" / "dbt-snowflake" / "bin" / "dbt"
PASSWORD = "dbt-pw-Hidden-3"
TAG = '{"client": "dbt", "target": "ci"}'


def dbt(command: list[str], project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [str(DBT), *command, "--no-version-check", "--project-dir", str(project / "project"),
            "--profiles-dir", str(project / "profiles"), "--log-path", str(project / "logs")]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_dbt_debug_and_run_against_the_emulator(
    fakesnow_server: FakesnowServer, snowflake_database: str, tmp_path: Path
) -> None:
    require(DBT.is_file(), f"dbt-snowflake is not installed at {DBT} (make dbt-snowflake)")
    shutil.copytree(PROJECT, tmp_path / "project", ignore=shutil.ignore_patterns("target", "logs"))
    url = f"snowflake://fake:{PASSWORD}@acct/{snowflake_database}/analytics"
    with RecordingProxy(fakesnow_server.url) as proxy:
        endpoint: dict[str, Any] = {"host": "127.0.0.1", "port": proxy.port, "protocol": "http"}
        with create_plugin(url, name="ci", pool={"size": 2}, **endpoint) as plugin:
            plugin.execute(
                "CREATE TABLE raw_orders (order_id INTEGER, customer_id INTEGER, amount NUMERIC(10, 2), "
                "status VARCHAR(20))"
            ).close()
            plugin.execute(
                "INSERT INTO raw_orders VALUES (1, 1, 10.5, 'completed'), (2, 1, 20, 'completed'), "
                "(3, 2, 5, 'completed'), (4, 2, 7, 'cancelled'), (5, 3, 1, 'completed'), "
                "(6, 3, 2, 'completed'), (7, 3, 3, 'completed')"
            ).close()

            profile = plugin.dbt_profile()
            text = write_profiles(tmp_path / "profiles", profile).read_text()
            assert PASSWORD not in text
            output = profile["floe"]["outputs"]["dev"]
            assert output["password"] == "{{ env_var('SNOWFLAKE_PASSWORD') }}"
            assert (output["host"], output["port"], output["protocol"]) == ("127.0.0.1", proxy.port, "http")

            env = {k: v for k, v in os.environ.items() if not k.startswith("SNOWFLAKE")}
            env.update(plugin.dbt_env(), DBT_SEND_ANONYMOUS_USAGE_STATS="false")
            debug = dbt(["debug"], tmp_path, env)
            assert debug.returncode == 0, debug.stdout[-3000:]
            assert "All checks passed" in debug.stdout

            run = dbt(["run", "--vars", "{raw_schema: analytics}"], tmp_path, env)
            assert run.returncode == 0, run.stdout[-3000:]
            assert "PASS=2" in run.stdout

            with plugin.execute("SELECT * FROM orders_summary ORDER BY customer_id") as result:
                assert result.columns == ["customer_id", "order_count", "total_amount"]
                assert [(c, n, float(t)) for c, n, t in result] == [(1, 2, 30.5), (2, 1, 5.0), (3, 3, 6.0)]
            with plugin.execute("SELECT customer_id FROM top_customers ORDER BY customer_id") as result:
                assert result.fetchall() == [(1,), (3,)]

        # dbt's sessions carry the profile's query_tag from their login on, and the password that
        # the profile's env_var() reference read from dbt_env()
        logins = [x.json["data"] for x in proxy.exchanges if x.path == LOGIN_REQUEST]
        dbt_logins = [d for d in logins if d["SESSION_PARAMETERS"].get("QUERY_TAG") == TAG]
        assert dbt_logins, [d["SESSION_PARAMETERS"] for d in logins]
        assert {d.get("PASSWORD") for d in dbt_logins} == {PASSWORD}
        assert not any(PASSWORD in x.text for x in proxy.exchanges if x.path == QUERY_REQUEST)

        # without the variable dbt has no password to send. It does not stop: a `password` whose
        # template fails to render is used as written (dbt's SecretRenderer: passwords may contain
        # Jinja-like text), so the login carries the template itself, which Snowflake refuses
        # (fakesnow accepts any password: the proxy shows what was sent)
        proxy.clear()
        del env["SNOWFLAKE_PASSWORD"]
        dbt(["debug"], tmp_path, env)
        sent = {x.json["data"].get("PASSWORD") for x in proxy.exchanges if x.path == LOGIN_REQUEST}
        assert sent == {output["password"]}  # a login was tried (not vacuous), with no password in it
        assert not any(PASSWORD in x.text for x in proxy.exchanges)
