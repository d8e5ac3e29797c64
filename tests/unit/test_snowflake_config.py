"""Snowflake targets in every form (URL, keyword overrides, manifest), key-pair auth, the dbt profile.

No server needed: these check what the plugin would hand to the connector and to dbt.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from fixtures.snowflake import write_rsa_key

from floe_compute import ConfigError, create_plugin
from support import require


@pytest.fixture(autouse=True)
def _snowflake_extra() -> None:
    require(
        importlib.util.find_spec("snowflake.sqlalchemy") is not None,
        "the snowflake extra is not installed (uv sync --all-extras)",
    )


URL = "snowflake://analyst:pw-Secr3t@acme-prod/analytics/marts?warehouse=WH_XS&role=REPORTER"


def connect_args(plugin: Any) -> dict[str, Any]:
    """What the connector's ``connect()`` would receive, the URL's parts and the connect_args."""
    url = plugin.engine_url()
    dialect_cls = url.get_dialect()
    _, opts = dialect_cls().create_connect_args(url)
    return {**opts, **plugin.engine_options()["connect_args"]}


def test_url_form_gives_a_snowflake_plugin() -> None:
    from floe_compute.engines.snowflake import SnowflakeComputePlugin, SnowflakeConfig

    plugin = create_plugin(URL)
    assert isinstance(plugin, SnowflakeComputePlugin)
    config = plugin.config
    assert isinstance(config, SnowflakeConfig)
    assert (config.account_name, config.user_name) == ("acme-prod", "analyst")
    assert (config.database_name, config.schema_name) == ("analytics", "marts")
    assert (config.warehouse_name, config.role_name) == ("WH_XS", "REPORTER")
    args = connect_args(plugin)
    assert args["account"] == "acme-prod"
    assert args["user"] == "analyst"
    assert args["password"] == "pw-Secr3t"
    assert (args["database"], args["schema"], args["warehouse"], args["role"]) == (
        "analytics",
        "marts",
        "WH_XS",
        "REPORTER",
    )
    assert args["host"] == "acme-prod.snowflakecomputing.com"  # no override: Snowflake's own endpoint


def test_keyword_overrides_win_and_reach_the_connector() -> None:
    plugin = create_plugin(
        URL, host="127.0.0.1", port=8080, protocol="http", warehouse="WH_L", schema="staging", role="ADMIN"
    )
    args = connect_args(plugin)
    assert (args["host"], args["port"], args["protocol"]) == ("127.0.0.1", 8080, "http")
    assert (args["warehouse"], args["schema"], args["role"]) == ("WH_L", "staging", "ADMIN")
    assert args["database"] == "analytics"
    # a config built from another keeps the overrides (schema is an alias of the field schema_)
    again = create_plugin(plugin.config, pool={"size": 2})
    assert again.config.schema_name == "staging"  # type: ignore[attr-defined]


def test_settings_are_login_session_parameters_not_alter_session() -> None:
    plugin = create_plugin(URL, settings={"TIMEZONE": "UTC", "WEEK_START": 1})
    assert connect_args(plugin)["session_parameters"] == {"TIMEZONE": "UTC", "WEEK_START": 1}


def test_manifest_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOE_TEST_SF_PASSWORD", "from-the-env-1")
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        "compute:\n"
        "  targets:\n"
        "    prod:\n"
        '      url: "snowflake://analyst@acme/db/public?warehouse=wh"\n'
        '      password: "${FLOE_TEST_SF_PASSWORD}"\n'
        "      role: LOADER\n"
        "      timeouts: {query: 600}\n"
    )
    plugin = create_plugin("prod", manifest=manifest)
    assert plugin.name == "snowflake"
    args = connect_args(plugin)
    assert args["password"] == "from-the-env-1"
    assert args["role"] == "LOADER"
    assert plugin.config.timeouts.query == 600
    assert "from-the-env-1" not in repr(plugin) + repr(plugin.config)


@pytest.mark.parametrize(
    ("url", "overrides", "message"),
    [
        ("snowflake://analyst:pw@/db", {}, "account: missing"),
        ("snowflake://acme/db", {}, "user: missing"),
        ("snowflake://analyst@acme/db", {}, "password: missing"),
        ("snowflake://analyst:pw@acme/db/s/extra", {}, "is not DATABASE or DATABASE/SCHEMA"),
        ("snowflake://analyst:pw@acme/db?host=127.0.0.1", {}, "give host as the host= field"),
        ("snowflake://analyst:pw@acme/db", {"protocol": "ftp"}, "protocol"),
        ("snowflake://analyst:pw@acme/db", {"port": 0}, "port"),
        ("snowflake://analyst:pw@acme/db", {"private_key_path": "/k.p8"}, "either a password or"),
        (
            "snowflake://analyst:pw@acme/db",
            {"private_key_passphrase": "x-phrase"},
            "without private_key_path",
        ),
    ],
)
def test_bad_targets_name_the_field(url: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        create_plugin(url, **overrides)
    assert "pw@" not in str(caught.value)
    assert "x-phrase" not in str(caught.value)


def test_key_pair_auth_reads_the_key_once_and_hides_the_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "rsa_key.p8"
    der = write_rsa_key(path, b"key-phrase-42")
    plugin = create_plugin(
        "snowflake://svc_loader@acme/db/s", private_key_path=str(path), private_key_passphrase="key-phrase-42"
    )
    args = connect_args(plugin)
    assert args["private_key"] == der  # decrypted here, handed over as DER
    assert "password" not in args
    assert "key-phrase-42" in plugin.config.secrets
    shown = repr(plugin) + str(plugin.config) + repr(plugin.config) + str(plugin.config.model_dump())
    assert "key-phrase-42" not in shown

    with pytest.raises(ConfigError, match=r"rsa_key\.p8 is not a PEM private key") as caught:
        create_plugin(
            "snowflake://svc_loader@acme/db/s",
            private_key_path=str(path),
            private_key_passphrase="wrong-phrase",
        ).engine_options()
    assert "wrong-phrase" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        create_plugin(
            "snowflake://svc@acme/db", private_key_path=str(tmp_path / "missing.p8")
        ).engine_options()


def test_dbt_profile_with_password() -> None:
    plugin = create_plugin(URL, name="prod", pool={"size": 3}, host="127.0.0.1", port=8080, protocol="http")
    output = plugin.dbt_profile()["floe"]["outputs"]["dev"]
    assert output == {
        "type": "snowflake",
        "account": "acme-prod",
        "user": "analyst",
        "password": "{{ env_var('SNOWFLAKE_PASSWORD') }}",
        "role": "REPORTER",
        "warehouse": "WH_XS",
        "database": "analytics",
        "schema": "marts",
        "threads": 3,
        "query_tag": '{"client": "dbt", "target": "prod"}',
        "connect_timeout": 10,
        "host": "127.0.0.1",
        "port": 8080,
        "protocol": "http",
    }
    assert plugin.dbt_env() == {"SNOWFLAKE_PASSWORD": "pw-Secr3t"}


def test_dbt_profile_with_key_pair(tmp_path: Path) -> None:
    path = tmp_path / "k.p8"
    write_rsa_key(path, b"phrase-77")
    plugin = create_plugin(
        "snowflake://svc@acme/db", private_key_path=str(path), private_key_passphrase="phrase-77"
    )
    output = plugin.dbt_profile()["floe"]["outputs"]["dev"]
    assert output["private_key_path"] == str(path)
    assert output["private_key_passphrase"] == "{{ env_var('SNOWFLAKE_PRIVATE_KEY_PASSPHRASE') }}"
    assert "password" not in output
    assert "host" not in output  # Snowflake's own endpoint: nothing to override
    assert "phrase-77" not in str(output)
    assert plugin.dbt_env() == {"SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "phrase-77"}


def test_importing_floe_compute_imports_no_snowflake_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, floe_compute; "
        "bad = [m for m in sys.modules if m.startswith(('snowflake', 'floe_compute.engines.snowflake'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scaled_numbers_reach_arrow_as_the_decimals_the_description_gives() -> None:
    # without it the connector turns NUMBER(p, s) into float64 in Arrow, while an empty result
    # (typed from the description) has decimal128(p, s)
    assert connect_args(create_plugin(URL))["arrow_number_to_decimal"] is True
