"""BigQuery configuration, URL forms, job labels and the dbt profile (no emulator needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from floe_compute import ConfigError, ConnectionFailedError, create_plugin
from support import require

require(
    __import__("importlib.util").util.find_spec("sqlalchemy_bigquery") is not None,
    "sqlalchemy-bigquery is not installed (uv sync --all-extras)",
)

from floe_compute.engines.bigquery import (  # noqa: E402 - after the check above
    BigQueryComputePlugin,
    BigQueryConfig,
    job_labels,
)


def test_url_with_dataset_and_location() -> None:
    plugin = create_plugin("bigquery://analytics-prod/sales?location=EU")
    assert type(plugin) is BigQueryComputePlugin
    config = plugin.config
    assert type(config) is BigQueryConfig
    assert (config.project, config.dataset, config.location) == ("analytics-prod", "sales", "EU")
    assert config.priority == "interactive"
    assert config.api_endpoint is None and config.credentials_file is None


def test_keyword_overrides_and_url_parameters(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    plugin = create_plugin(
        f"bigquery://p1/ds1?credentials_path={key}&priority=batch",
        api_endpoint="http://127.0.0.1:9050",
        limits={"maximum_bytes_billed": "2GB"},
        location="asia-northeast1",
    )
    config = plugin.config
    assert isinstance(config, BigQueryConfig)
    assert config.credentials_file == key
    assert config.priority == "batch"
    assert config.maximum_bytes_billed == 2 * 1000**3
    assert config.location == "asia-northeast1"
    assert config.api_endpoint == "http://127.0.0.1:9050"


def test_manifest_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOE_TEST_BQ_KEY", json.dumps({"type": "service_account", "private_key": "sekrit"}))
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        "compute:\n"
        "  timeouts: {query: 60}\n"
        "  targets:\n"
        "    warehouse:\n"
        "      url: bigquery://acme-dw/marts\n"
        "      credentials_json: ${FLOE_TEST_BQ_KEY}\n"
        "      limits: {maximum_bytes_billed: 1TiB}\n"
    )
    plugin = create_plugin("warehouse", manifest=manifest)
    config = plugin.config
    assert isinstance(config, BigQueryConfig)
    assert (config.project, config.dataset, config.name) == ("acme-dw", "marts", "warehouse")
    assert config.maximum_bytes_billed == 1024**4
    assert config.timeouts.query == 60
    assert "sekrit" in config.secrets
    assert "sekrit" not in repr(config) + repr(plugin) + str(config.model_dump())


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"url": "bigquery://"}, "project"),
        ({"url": "bigquery://Bad_Project/ds"}, "project"),
        ({"url": "bigquery://p1/bad-dataset"}, "dataset"),
        ({"url": "bigquery://p1/ds?arraysize=5"}, "unknown parameter arraysize"),
        ({"url": "bigquery://p1/ds", "priority": "urgent"}, "priority"),
        ({"url": "bigquery://p1/ds", "limits": {"maximum_bytes_billed": "lots"}}, "maximum_bytes_billed"),
        ({"url": "bigquery://p1/ds", "limits": {"memory_limit": "1GB"}}, "limits.memory_limit"),
        ({"url": "bigquery://p1/ds", "credentials_file": "k.json", "credentials_json": "{}"}, "not both"),
        ({"url": "bigquery://p1/ds", "settings": {"a": 1}}, "settings"),
    ],
)
def test_bad_config_names_the_field(overrides: dict[str, Any], named: str) -> None:
    url = overrides.pop("url")
    with pytest.raises(ConfigError, match=named):
        create_plugin(url, **overrides)


def test_job_labels_follow_bigquerys_rules() -> None:
    labels = job_labels({"Team": "Growth", "dag.run": "Nightly Run #7", "k" * 70: "v" * 70}, "q-1.A")
    assert labels == {
        "team": "growth",
        "dag_run": "nightly_run_7",
        "k" * 63: "v" * 63,
        "floe_query_id": "q-1_a",
    }
    for key in labels:
        assert len(key) <= 63 and key[0].isalpha()
    with pytest.raises(ConfigError, match="'9lives'"):
        job_labels({"9lives": "x"}, "q")
    with pytest.raises(ConfigError, match="'A B'"):
        job_labels({"a_b": "1", "A B": "2"}, "q")


def test_dbt_profile_with_a_key_file(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    plugin = create_plugin(
        "bigquery://acme-dw/marts?location=EU&priority=batch",
        credentials_file=str(key),
        pool={"size": 6},
        timeouts={"query": 90.5},
        limits={"maximum_bytes_billed": "10GB"},
    )
    assert plugin.dbt_profile()["floe"]["outputs"]["dev"] == {
        "type": "bigquery",
        "project": "acme-dw",
        "dataset": "marts",
        "method": "service-account",
        "keyfile": str(key),
        "threads": 6,
        "location": "EU",
        "priority": "batch",
        "job_execution_timeout_seconds": 91,
        "maximum_bytes_billed": 10 * 1000**3,
    }
    assert plugin.dbt_env() == {}


def test_dbt_profile_with_key_json_reads_the_key_from_the_environment() -> None:
    key = {
        "type": "service_account",
        "project_id": "acme-dw",
        "private_key": "-----BEGIN sekrit",
        "client_email": "etl@acme-dw.iam.gserviceaccount.com",
    }
    plugin = create_plugin("bigquery://acme-dw/marts", credentials_json=json.dumps(key))
    output = plugin.dbt_profile()["floe"]["outputs"]["dev"]
    assert output["method"] == "service-account-json"
    assert output["keyfile_json"]["private_key"] == "{{ env_var('FLOE_BIGQUERY_PRIVATE_KEY') }}"
    assert output["keyfile_json"]["client_email"] == key["client_email"]
    assert "sekrit" not in json.dumps(output)
    assert plugin.dbt_env() == {"FLOE_BIGQUERY_PRIVATE_KEY": key["private_key"]}


def test_dbt_profile_methods_without_a_key() -> None:
    adc = create_plugin("bigquery://acme-dw/marts").dbt_profile()["floe"]["outputs"]["dev"]
    assert adc["method"] == "oauth" and "api_endpoint" not in adc
    emulator = create_plugin("bigquery://p1/ds", api_endpoint="http://127.0.0.1:9050")
    output = emulator.dbt_profile()["floe"]["outputs"]["dev"]
    assert output["method"] == "oauth-secrets" and output["api_endpoint"] == "http://127.0.0.1:9050"
    with pytest.raises(ConfigError, match="dataset"):
        create_plugin("bigquery://p1").dbt_profile()


def test_missing_application_default_credentials_name_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an explicit ADC file that does not exist: google.auth fails at once, without asking a metadata server
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
    with pytest.raises(ConnectionFailedError, match="BigQuery project acme-dw: no credentials given"):
        create_plugin("bigquery://acme-dw/marts").connect()
