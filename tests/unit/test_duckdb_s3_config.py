"""The ``s3`` sections of a DuckDB target: validated at config time, rendered as the one secret
statement that holds the keys, and their values never in a config error."""

from __future__ import annotations

import pytest

from floe_compute import ConfigError, create_plugin
from floe_compute.engines.duckdb import DuckDBConfig

KEYS = {"key_id": "AKIAEXAMPLE", "secret_key": "s3-secret-7d1e"}


def test_s3_settings_are_validated_without_showing_the_key() -> None:
    cases = {
        "give key_id and secret_key together": {"secret_key": KEYS["secret_key"]},
        "credential_chain finds the keys itself": {"provider": "credential_chain", **KEYS},
        "expected host:port, or an http:// or https:// URL": {"endpoint": "ftp://x", **KEYS},
        "chain is for provider: credential_chain": {"chain": "env", **KEYS},
        "scope": {"scope": "gs://bucket", **KEYS},
    }
    for expected, s3 in cases.items():
        with pytest.raises(ConfigError, match=expected) as caught:
            create_plugin(s3=s3)
        assert KEYS["secret_key"] not in str(caught.value)
    catalog = {"name": "lake", "endpoint": "http://127.0.0.1:1", "warehouse": "w", "s3": KEYS}
    with pytest.raises(ConfigError, match="give each s3 section its own scope") as caught:
        create_plugin(s3=KEYS, attach=[catalog])
    assert KEYS["secret_key"] not in str(caught.value)


def test_the_secret_statement_and_the_extensions_it_needs() -> None:
    config = DuckDBConfig.model_validate(
        {"s3": {"endpoint": "http://127.0.0.1:9000", "region": "eu-west-1", "url_style": "path", **KEYS}}
    )
    assert config.s3 is not None
    assert config.s3.create_secret_sql("floe_s3_secret") == (
        "CREATE OR REPLACE TEMPORARY SECRET floe_s3_secret (TYPE s3, PROVIDER 'config', "
        "ENDPOINT '127.0.0.1:9000', USE_SSL false, REGION 'eu-west-1', URL_STYLE 'path', "
        "KEY_ID 'AKIAEXAMPLE', SECRET 's3-secret-7d1e')"
    )
    assert config.all_extensions == ("httpfs",)
    assert KEYS["secret_key"] in config.secrets  # scrubbed from every message
    assert KEYS["secret_key"] not in repr(config) + config.model_dump_json()
    chain = DuckDBConfig.model_validate({"s3": {"provider": "credential_chain", "chain": "env;instance"}})
    assert chain.all_extensions == ("httpfs", "aws")
    assert chain.s3 is not None
    assert "PROVIDER 'credential_chain', CHAIN 'env;instance'" in chain.s3.create_secret_sql("s")
