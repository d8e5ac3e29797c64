"""Invalid configuration fails when it is built, naming the field; secrets stay hidden."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

import pytest

from floe_compute import ComputeConfig, ConfigError, DuckDBConfig, ResourceLimits, create_plugin
from floe_compute.errors import redact


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"limits": {"memory_limit": "lots"}}, "limits.memory_limit"),
        ({"limits": {"max_temp_directory_size": "-1GB"}}, "limits.max_temp_directory_size"),
        ({"timeouts": {"query": -1}}, "timeouts.query"),
        ({"pool": {"size": 0}}, "pool.size"),
        ({"pool": {"max_overflow": -2}}, "pool.max_overflow"),
        ({"pool": {"sise": 3}}, "pool.sise"),
        ({"limits": {"threads": 0}}, "limits.threads"),
    ],
)
def test_invalid_values_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_plugin("duckdb:///:memory:", **overrides)
    assert field in str(caught.value)


def test_memory_limit_message_says_what_is_expected() -> None:
    with pytest.raises(ConfigError, match=r"limits.memory_limit: 'lots' is not a size; expected .*2GB"):
        create_plugin("duckdb:///:memory:", limits={"memory_limit": "lots"})


def test_configs_are_frozen() -> None:
    limits = ResourceLimits(memory_limit="1GB")
    with pytest.raises(ValueError, match="frozen"):
        limits.memory_limit = "2GB"  # type: ignore[misc]


def test_read_only_memory_database_is_rejected() -> None:
    with pytest.raises(ValueError, match="read_only"):
        DuckDBConfig(read_only=True)


def test_url_password_and_secret_fields_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    config = ComputeConfig(
        url="postgresql+psycopg://analyst:s3cr3t-pw@db.internal/warehouse", password="other-secret"
    )
    shown = repr(config) + str(config) + str(config.model_dump())
    assert "s3cr3t-pw" not in shown
    assert "other-secret" not in shown
    assert config.sqlalchemy_url().password == "other-secret"
    assert config.secrets == ("other-secret",)  # the explicit password wins over the URL's


def test_validation_error_never_echoes_a_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        create_plugin("duckdb:///:memory:", password=12345678, pool={"size": "hunter2"})
    assert "hunter2" in str(caught.value)  # non-secret inputs are echoed to help
    with pytest.raises(ConfigError) as caught:
        DuckDBConfig.model_validate({"password": ["s3cr3t"]})
    assert "password" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(ValueError, match="password") as raw:
        DuckDBConfig(password=["s3cr3t"])  # type: ignore[arg-type]
    assert "s3cr3t" not in str(raw.value)


def test_redact_masks_credentials_in_free_text() -> None:
    text = "connect postgresql://bob:pa55@host/db failed; SECRET 'tok123' password=abc client_secret: xyz"
    cleaned = redact(text, ("pa55",))
    for secret in ("pa55", "tok123", "abc", "xyz"):
        assert secret not in cleaned
    assert "bob" in cleaned


def test_secret_in_statement_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), create_plugin(password="pw-in-config") as plugin:
        with pytest.raises(ConfigError):
            plugin.execute("SELECT 1", timeout=0)
        assert plugin.execute("SELECT 'fine'").fetchall() == [("fine",)]
    assert "pw-in-config" not in caplog.text


def test_redact_leaves_ordinary_words_alone() -> None:
    assert redact("password authentication failed for user floe") == (
        "password authentication failed for user floe"
    )
    assert redact("could not get token from http://catalog") == "could not get token from http://catalog"
    assert "abc" not in redact("CREATE SECRET s (TYPE iceberg, TOKEN 'abc')")


class _SingleThreadedConfig(ComputeConfig):
    """An engine's config that cannot honour ``limits.threads``: it only says so, and why."""

    unsupported_limits: ClassVar[Mapping[str, str]] = {"threads": "it runs every query on one thread"}
    engine_title = "SingleThreaded"


def test_a_limit_the_engine_cannot_honour_is_refused_naming_the_limit_the_engine_and_why() -> None:
    with pytest.raises(
        ConfigError,
        match=r"limits\.threads: not supported by SingleThreaded \(it runs every query on one thread\)",
    ):
        _SingleThreadedConfig.model_validate({"url": "duckdb:///:memory:", "limits": {"threads": 2}})
    other = _SingleThreadedConfig.model_validate(
        {"url": "duckdb:///:memory:", "limits": {"memory_limit": "1GB"}}
    )
    assert other.limits.memory_limit == 10**9


def test_an_unsupported_limit_that_is_not_a_limit_fails_where_the_engine_declares_it() -> None:
    with pytest.raises(TypeError, match=r"thread_count.*not a resource limit.*threads"):

        class _TypoConfig(ComputeConfig):
            unsupported_limits: ClassVar[Mapping[str, str]] = {"thread_count": "a typo refuses nothing"}
