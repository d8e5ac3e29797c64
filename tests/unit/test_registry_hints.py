"""What ``create_plugin`` says and accepts when the user's first guess is nearly right: a typo in a
scheme or a keyword, a missing driver, a path instead of a URL, ``postgres://``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from floe_compute import ConfigError, PluginNotFoundError, create_plugin, list_plugins


def _without_driver(module: str, url: str) -> str:
    """The error a user without the driver's package sees (the import of ``module`` fails)."""
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None  # as if the package were not installed\n"
        "from floe_compute import create_plugin\n"
        "try:\n"
        f"    create_plugin({url!r})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_a_missing_driver_names_the_extra_to_install() -> None:
    message = _without_driver("psycopg", "postgresql://app@localhost/db")
    assert message.startswith("PluginNotFoundError")
    assert "floe-compute[postgres]" in message
    assert "psycopg" in message
    # this environment is a clone (an editable install): the exact command to run in it
    assert "uv sync --extra postgres" in message
    assert "pip install -e '.[postgres]'" in message
    assert "installed:" not in message  # never "not installed ... installed: postgresql://"


@pytest.mark.parametrize(
    ("module", "url", "extra"),
    [
        ("snowflake", "snowflake://u@account/db", "snowflake"),
        ("pyhive", "spark://localhost:10000/default", "spark"),
        ("sqlalchemy_bigquery", "bigquery://project/dataset", "bigquery"),
    ],
)
def test_each_engine_names_its_own_extra(module: str, url: str, extra: str) -> None:
    assert f"floe-compute[{extra}]" in _without_driver(module, url)


@pytest.mark.parametrize("url", ["duckb:///:memory:", "DuckDB:///:memory:", "duck:///:memory:"])
def test_an_unknown_scheme_suggests_the_nearest(url: str) -> None:
    with pytest.raises(PluginNotFoundError, match=r"did you mean duckdb://\?"):
        create_plugin(url)


def test_an_unknown_top_level_keyword_suggests_the_nested_field() -> None:
    with pytest.raises(ConfigError, match=r"pool_size: .*did you mean pool=\{'size': \.\.\.\}\?"):
        create_plugin("duckdb:///:memory:", pool_size=3)


def test_an_unknown_nested_field_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"pool\.max_size: .*did you mean 'size'\?"):
        create_plugin("duckdb:///:memory:", pool={"max_size": 3})


def test_a_keyword_typo_suggests_the_field() -> None:
    with pytest.raises(ConfigError, match=r"timeout: .*did you mean 'timeouts'\?"):
        create_plugin("duckdb:///:memory:", timeout={"query": 3})


def test_postgres_is_an_alias_of_postgresql() -> None:
    plugin = create_plugin("postgres://app@localhost:5432/db")
    assert plugin.name == "postgresql"
    assert plugin.config.url.drivername == "postgresql"
    assert "postgres" not in list_plugins()  # one engine, listed once


@pytest.mark.parametrize("name", ["warehouse.duckdb", "warehouse.db"])
def test_a_path_opens_a_duckdb_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with create_plugin(path) as compute, compute.execute("CREATE TABLE t AS SELECT 42 AS x"):
        pass
    assert path.exists()
    with create_plugin(str(path)) as compute, compute.execute("SELECT x FROM t") as result:
        assert result.fetchall() == [(42,)]
