"""Databricks config, URL forms, dbt profile and secrets (no server needed: nothing connects)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from floe_compute import create_plugin
from floe_compute.errors import ConfigError
from support import require


@pytest.fixture(autouse=True)
def _connector_installed() -> None:
    """Skipped locally without the connector; in CI its absence is a failure."""
    require(importlib.util.find_spec("databricks.sql") is not None, "databricks-sql-connector not installed")


TOKEN = "dapi-do-not-show-0123456789"
URL = f"databricks://token:{TOKEN}@adb-1.azuredatabricks.net?http_path=/sql/1.0/warehouses/abc&catalog=main&schema=sales"


def test_url_gives_a_databricks_plugin_with_its_fields() -> None:
    plugin = create_plugin(URL)
    config = plugin.config
    assert type(plugin).__name__ == "DatabricksComputePlugin"
    assert (config.host, config.http_path, config.catalog, config.db_schema) == (
        "adb-1.azuredatabricks.net",
        "/sql/1.0/warehouses/abc",
        "main",
        "sales",
    )
    assert config.token is not None and config.token.get_secret_value() == TOKEN


def test_overrides_win_over_the_url() -> None:
    plugin = create_plugin(URL, schema="finance", catalog="dev", session_configuration={"ANSI_MODE": "true"})
    assert (plugin.config.catalog, plugin.config.db_schema) == ("dev", "finance")
    assert plugin.connect_args()["session_configuration"] == {"ANSI_MODE": "true"}


def test_the_token_reaches_the_connector_but_never_the_engine_url() -> None:
    plugin = create_plugin(URL)
    url = plugin.engine_url()
    assert TOKEN not in url.render_as_string(hide_password=False)
    assert url.drivername == "databricks+floe_connector"
    assert dict(url.query) == {"http_path": "/sql/1.0/warehouses/abc", "catalog": "main", "schema": "sales"}
    assert plugin.connect_args()["access_token"] == TOKEN


def test_secrets_never_in_repr_or_dumps() -> None:
    plugin = create_plugin("databricks://adb-1?http_path=/p", client_id="sp-1", client_secret=TOKEN)
    for text in (repr(plugin.config), str(plugin.config.model_dump()), plugin.config.model_dump_json()):
        assert TOKEN not in text
    assert TOKEN in plugin.config.secrets


def test_manifest_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOE_TEST_DBX_SECRET", "from-the-env-2")
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        "compute:\n"
        "  targets:\n"
        "    prod:\n"
        '      url: "databricks://adb-1.azuredatabricks.net?http_path=/sql/1.0/warehouses/abc"\n'
        "      client_id: sp-1\n"
        '      client_secret: "${FLOE_TEST_DBX_SECRET}"\n'
        "      catalog: main\n"
        "      schema: sales\n"
        "      session_configuration: {ANSI_MODE: 'true'}\n"
    )
    plugin = create_plugin("prod", manifest=manifest)
    assert type(plugin).__name__ == "DatabricksComputePlugin"
    config = plugin.config
    assert (config.client_id, config.catalog, config.db_schema) == ("sp-1", "main", "sales")
    assert config.client_secret is not None and config.client_secret.get_secret_value() == "from-the-env-2"
    assert plugin.connect_args()["session_configuration"] == {"ANSI_MODE": "true"}
    assert "from-the-env-2" not in repr(plugin) + repr(config)


def test_telemetry_is_off_unless_turned_on() -> None:
    assert create_plugin(URL).connect_args()["enable_telemetry"] is False
    assert create_plugin(URL, enable_telemetry=True).connect_args()["enable_telemetry"] is True


def test_endpoint_options_reach_the_connector() -> None:
    plugin = create_plugin(
        URL, connection_uri="http://127.0.0.1:1234/cliservice", tls_trusted_ca_file="/ca.pem", port=8443
    )
    args = plugin.connect_args()
    assert args["_connection_uri"] == "http://127.0.0.1:1234/cliservice"
    assert args["_tls_trusted_ca_file"] == "/ca.pem"
    assert args["_port"] == 8443


def test_oauth_m2m_gives_a_credentials_provider() -> None:
    plugin = create_plugin("databricks://adb-1?http_path=/p", client_id="sp-1", client_secret=TOKEN)
    args = plugin.connect_args()
    assert args["access_token"] is None
    assert args["credentials_provider"].auth_type() == "oauth-m2m"
    assert TOKEN not in repr(args["credentials_provider"])


@pytest.mark.parametrize(
    ("url", "overrides", "named"),
    [
        ("databricks://token:x@h", {}, "http_path"),
        ("databricks://h?http_path=/p", {"client_id": "a"}, "client_id"),
        ("databricks://token:x@h?http_path=/p", {"client_id": "a", "client_secret": "b"}, "client_id"),
        ("databricks://token:x@h?http_path=/p", {"access_token": "y"}, "access_token"),
        ("databricks://h?http_path=/p", {"session_configuration": {"A": "1; DROP"}}, "session_configuration"),
        ("databricks://h?http_path=/p", {"limits": {"threads": 2}}, "limits.threads"),
        ("databricks://h?http_path=/p", {"port": 0}, "port"),
        ("databricks+pyhive://h?http_path=/p", {}, "url"),
    ],
)
def test_bad_input_names_the_field(url: str, overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        create_plugin(url, **overrides)


def test_dbt_profile_reads_the_token_from_the_environment() -> None:
    plugin = create_plugin(URL, session_configuration={"ANSI_MODE": "true"})
    target = plugin.dbt_profile()["floe"]["outputs"]["dev"]
    assert target["type"] == "databricks"
    assert (target["host"], target["http_path"], target["catalog"], target["schema"]) == (
        "adb-1.azuredatabricks.net",
        "/sql/1.0/warehouses/abc",
        "main",
        "sales",
    )
    assert target["token"] == "{{ env_var('DATABRICKS_TOKEN') }}"
    assert target["connection_parameters"] == {"enable_telemetry": False}
    assert target["session_properties"] == {"ANSI_MODE": "true"}
    assert TOKEN not in str(plugin.dbt_profile())
    assert plugin.dbt_env() == {"DATABRICKS_TOKEN": TOKEN}


def test_failing_requests_are_retried_only_for_the_connect_timeout() -> None:
    """The connector retries a failing request for 900 s by default: a down endpoint would hang connect."""
    assert (
        create_plugin(URL, timeouts={"connect": 7}).connect_args()["_retry_stop_after_attempts_duration"] == 7
    )


def test_the_connector_shim_is_pinned_to_the_locked_connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test-only shim (fixtures/databricks.py) names the connector versions of both lock files,
    and refuses any other version instead of patching it blindly."""
    import re
    from pathlib import Path

    from fixtures import databricks as fixture

    root = Path(__file__).parents[2]
    locked = set()
    for lock in (root / "uv.lock", root / "fixtures/servers/dbt-databricks/uv.lock"):
        found = re.search(r'name = "databricks-sql-connector"\nversion = "([^"]+)"', lock.read_text())
        assert found, lock
        locked.add(found.group(1))
    assert locked == set(fixture.SHIMMED_CONNECTORS)

    monkeypatch.setattr(fixture, "version", lambda name: "9.9.9")
    with pytest.raises(
        RuntimeError, match=r"shims databricks-sql-connector 4\.3\.0 and 4\.1\.5, but 9\.9\.9"
    ):
        fixture.shim().__enter__()
