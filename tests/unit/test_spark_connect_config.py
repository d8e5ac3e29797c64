"""Spark Connect URL forms, config validation and the dbt profile: no server needed."""

from __future__ import annotations

import importlib.util

import pytest

from floe_compute import ConfigError, create_plugin
from support import require

require(
    importlib.util.find_spec("pyspark") is not None, "pyspark-client is not installed (uv sync --all-extras)"
)

from floe_compute.engines.spark import SparkComputePlugin  # noqa: E402
from floe_compute.engines.spark_connect import SparkConnectComputePlugin, SparkConnectConfig  # noqa: E402


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("sc://127.0.0.1:15002", None),
        ("sc://127.0.0.1:15002/", None),
        ("spark+connect://127.0.0.1:15002/sales", "sales"),
        ("sc://127.0.0.1:15002/;user_id=etl", None),
        ("spark+connect://127.0.0.1:15002/sales;use_ssl=false", "sales"),
    ],
)
def test_url_forms(url: str, database: str | None) -> None:
    plugin = create_plugin(url)
    assert isinstance(plugin, SparkConnectComputePlugin)
    config = plugin.config
    assert isinstance(config, SparkConnectConfig)
    assert (config.url.host, config.port, config.url.database) == ("127.0.0.1", 15002, database)
    assert not plugin.connected


def test_spark_thrift_urls_still_mean_the_thrift_engine() -> None:
    assert isinstance(create_plugin("spark://u@127.0.0.1:10000/default"), SparkComputePlugin)
    assert isinstance(create_plugin("spark+thrift://u@127.0.0.1:10000/default"), SparkComputePlugin)


def test_sparks_own_parameters_and_the_token() -> None:
    plugin = create_plugin("sc://spark.internal:443/;use_ssl=true;token=Tok-123-secret;user_id=etl")
    config = plugin.config
    assert isinstance(config, SparkConnectConfig)
    assert (config.use_ssl, config.user_id, config.port) == (True, "etl", 443)
    assert config.password is not None and config.password.get_secret_value() == "Tok-123-secret"
    for shown in (repr(config), str(config), config.model_dump_json(), plugin.pool_name):
        assert "Tok-123-secret" not in shown
    assert (
        config.connection_string(token=False)
        == "sc://spark.internal:443/;user_agent=floe-compute;use_ssl=true;user_id=etl"
    )
    assert config.connection_string().endswith(";token=Tok-123-secret")


def test_query_form_of_the_parameters() -> None:
    config = create_plugin("spark+connect://spark.internal:15002/db?use_ssl=true&user_id=etl").config
    assert isinstance(config, SparkConnectConfig)
    assert (config.use_ssl, config.user_id, config.url.database) == (True, "etl", "db")


@pytest.mark.parametrize(
    ("url", "overrides", "message"),
    [
        ("sc://spark.internal:15002/;token=abc", {}, "a token is sent only with use_ssl=true"),
        ("sc://127.0.0.1:15002/;tokn=abc", {}, "unknown Spark Connect parameter"),
        ("sc://:15002", {}, "host is missing"),
        ("sc://127.0.0.1:15002", {"limits": {"memory_limit": "1GB"}}, "not supported by Spark Connect"),
        ("sc://127.0.0.1:15002", {"settings": {"bad name": 1}}, "not a Spark setting name"),
    ],
)
def test_config_errors_name_the_value(url: str, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_plugin(url, **overrides)


def test_a_token_to_a_loopback_address_needs_no_tls() -> None:
    config = create_plugin("sc://localhost:15002/;token=abc").config
    assert isinstance(config, SparkConnectConfig) and not config.use_ssl


def test_dbt_profile_uses_the_session_method_and_spark_remote() -> None:
    plugin = create_plugin(
        "spark+connect://127.0.0.1:15002/analytics", settings={"spark.sql.ansi.enabled": True}
    )
    target = plugin.dbt_target()
    assert target["type"] == "spark" and target["method"] == "session"
    assert target["schema"] == "analytics"
    assert target["server_side_parameters"] == {"spark.sql.ansi.enabled": "True"}
    assert plugin.dbt_env() == {"SPARK_REMOTE": "sc://127.0.0.1:15002/;user_agent=floe-compute"}
