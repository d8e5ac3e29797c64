"""Secrets given in a URL's query string, in settings or in an endpoint never reach a repr, a dump,
a metric label, the CLI or an error; the driver's exception is chained only when it is safe."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from floe_compute import ConfigError, QueryError, create_plugin
from floe_compute.cli import main
from floe_compute.config import display_url
from floe_compute.errors import RedactedDriverError, driver_cause, holds_secret, redact

SECRET_PARAMS = ["password", "token", "access_token", "private_key_passphrase", "credentials", "api_key"]


def _secret() -> str:
    return f"s3cr3t-{secrets.token_hex(6)}"


def _shown(plugin: Any) -> list[str]:
    config = plugin.config
    return [
        repr(plugin),
        str(plugin),
        repr(config),
        str(config),
        config.model_dump_json(),
        plugin.pool_name,
        display_url(config.url),
    ]


@pytest.mark.parametrize("param", SECRET_PARAMS)
def test_secret_query_parameters_move_out_of_the_url(param: str) -> None:
    value = _secret()
    plugin = create_plugin(f"postgresql+psycopg://floe@db.internal/warehouse?sslmode=require&{param}={value}")
    for text in _shown(plugin):
        assert value not in text
    assert "sslmode=require" in plugin.pool_name  # ordinary parameters stay visible
    driver_url = plugin.config.sqlalchemy_url()
    given = driver_url.password if param == "password" else driver_url.query[param]
    assert given == value  # the driver still gets it
    assert value in plugin.config.secrets


def test_settings_with_secret_names_are_masked() -> None:
    value = _secret()
    plugin = create_plugin("duckdb:///:memory:", settings={"s3_secret_access_key": value, "threads": 2})
    for text in _shown(plugin):
        assert value not in text
    assert plugin.config.settings["s3_secret_access_key"] == value  # the engine still gets it
    assert json.loads(plugin.config.model_dump_json())["settings"]["threads"] == 2


def test_secret_given_twice_in_the_query_is_refused_without_echo() -> None:
    value = _secret()
    with pytest.raises(ConfigError, match="token") as caught:
        create_plugin(f"postgresql+psycopg://floe@h/db?token={value}&token={value}")
    assert value not in str(caught.value)


def test_display_url_masks_every_form() -> None:
    value = _secret()
    for url in (
        f"postgresql://u:{value}@h/db",
        f"postgresql://u@h/db?access_token={value}",
        f"http://user:{value}@catalog:8181",
    ):
        assert value not in display_url(url)


def test_cli_health_never_shows_a_query_secret(capsys: pytest.CaptureFixture[str]) -> None:
    value = _secret()
    url = f"postgresql+psycopg://floe@127.0.0.1:1/db?password={value}&connect_timeout=2"
    for extra in ([], ["--json"]):
        assert main(["health", url, *extra]) == 1  # nothing listens there
        captured = capsys.readouterr()
        assert value not in captured.out + captured.err
        assert "127.0.0.1" in captured.out


# -- chained driver exceptions ------------------------------------------------------------------


def test_redact_masks_the_parts_of_a_secret_split_by_a_control_character() -> None:
    secret = "first-part\x00second-part"
    # a C string stops at the NUL: the driver's message shows only the first part
    assert redact("bad secret first-part in statement", (secret,)) == "bad secret *** in statement"
    assert redact("x private_key_passphrase=abc&access_token=zzz") == (
        "x private_key_passphrase=***&access_token=***"
    )


def test_driver_cause_never_keeps_a_secret() -> None:
    secret = _secret()
    outer = RuntimeError("attach failed")
    outer.__context__ = ValueError(f"CREATE SECRET s (TOKEN '{secret}')")
    assert holds_secret(outer, (secret,))
    kept = driver_cause(outer, (secret,))
    assert isinstance(kept, RedactedDriverError)
    assert secret not in str(kept)
    assert kept.__cause__ is None and kept.__context__ is None
    plain = ValueError("nothing secret here")
    assert driver_cause(plain, (secret,)) is plain
    assert driver_cause(plain, (secret,), keep=False) is None


def test_keep_driver_cause_switch() -> None:
    with create_plugin("duckdb:///:memory:") as plugin, pytest.raises(QueryError) as caught:
        plugin.execute("SELECT * FROM no_such_table")
    assert caught.value.__cause__ is not None  # on by default: the driver's own exception
    with (
        create_plugin("duckdb:///:memory:", errors={"keep_driver_cause": False}) as plugin,
        pytest.raises(QueryError) as caught,
    ):
        plugin.execute("SELECT * FROM no_such_table")
    assert caught.value.__cause__ is None
    assert "no_such_table" in str(caught.value)  # the library's message keeps the engine's words
