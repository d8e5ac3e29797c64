"""Spark URL forms, config validation and the dbt profile: no server needed (nothing connects)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from floe_compute import ConfigError, create_plugin
from support import require

require(importlib.util.find_spec("pyhive") is not None, "PyHive is not installed (uv sync --all-extras)")

from floe_compute.engines.spark import SparkComputePlugin, SparkConfig  # noqa: E402


@pytest.mark.parametrize(
    "url",
    ["spark://127.0.0.1:10000/default", "spark+thrift://127.0.0.1:10000/default"],
)
def test_url_forms(url: str) -> None:
    plugin = create_plugin(url)
    assert isinstance(plugin, SparkComputePlugin)
    config = plugin.config
    assert isinstance(config, SparkConfig)
    assert (config.host, config.port, config.database, config.auth) == ("127.0.0.1", 10000, "default", "NONE")
    assert not plugin.connected  # creating a plugin opens nothing


def test_manifest_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_PW", "s3cret-pw")
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "compute": {
                    "default": "lake",
                    "targets": {
                        "lake": {
                            "url": "spark://etl@thrift.example:10001/sales?auth=ldap",
                            "password": "${SPARK_PW}",
                            "settings": {"spark.sql.shuffle.partitions": 8},
                        }
                    },
                }
            }
        )
    )
    plugin = create_plugin(manifest=manifest)
    config = plugin.config
    assert isinstance(config, SparkConfig)
    assert (config.username, config.port, config.database, config.auth) == ("etl", 10001, "sales", "LDAP")
    assert "auth" not in config.url.query  # moved into the field
    assert plugin.session_settings()["spark.sql.shuffle.partitions"] == "8"
    shown = repr(plugin) + repr(config) + str(config.model_dump())
    assert "s3cret-pw" not in shown


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth": "PAM"}, "auth"),
        ({"auth": "KERBEROS"}, "kerberos_service_name"),
        ({"password": "pw"}, "password: only sent with auth='LDAP' or 'CUSTOM'"),
        ({"limits": {"memory_limit": "2GB"}}, "limits.memory_limit: not supported by Spark"),
        ({"limits": {"threads": 4}}, "limits.threads: not supported by Spark"),
        ({"settings": {"bad key": 1}}, "'bad key' is not a Spark setting name"),
        ({"settings": {"spark.x": "a; DROP TABLE t"}}, "settings.spark.x: a value may not contain"),
    ],
)
def test_bad_config_names_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        create_plugin("spark://127.0.0.1:10000/default", **overrides)


def test_other_backends_are_refused() -> None:
    with pytest.raises(ConfigError, match="spark\\+http is not supported"):
        SparkConfig.model_validate({"url": "spark+http://h:1/db"})


def test_dbt_profile_is_dbt_spark_thrift_and_never_holds_the_password() -> None:
    plugin = create_plugin(
        "spark://etl@thrift.example:10001/sales",
        auth="LDAP",
        password="s3cret-pw",
        dbt_schema="marts",
        settings={"spark.sql.shuffle.partitions": 8},
    )
    profile = plugin.dbt_profile("floe", "dev")
    target = profile["floe"]["outputs"]["dev"]
    assert target["type"] == "spark" and target["method"] == "thrift"
    assert (target["host"], target["port"], target["user"], target["schema"]) == (
        "thrift.example",
        10001,
        "etl",
        "marts",
    )
    assert target["auth"] == "LDAP"
    assert target["password"] == "{{ env_var('SPARK_PASSWORD') }}"
    assert target["server_side_parameters"] == {"spark.sql.shuffle.partitions": "8"}
    assert "s3cret-pw" not in yaml.safe_dump(profile)
    assert plugin.dbt_env() == {"SPARK_PASSWORD": "s3cret-pw"}
