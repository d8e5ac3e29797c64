"""create_plugin in all its forms, discovery through entry points, and the plugin base class."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from floe_compute import (
    ComputePlugin,
    ConfigError,
    DuckDBComputePlugin,
    DuckDBConfig,
    PluginNotFoundError,
    QueryTimeoutError,
    create_plugin,
    list_plugins,
)


def test_default_is_duckdb_in_memory() -> None:
    with create_plugin() as plugin:
        assert isinstance(plugin, DuckDBComputePlugin)
        assert plugin.config.database == ":memory:"
        assert plugin.execute("SELECT 42").fetchall() == [(42,)]


def test_url_forms(tmp_path: Path) -> None:
    with create_plugin("duckdb:///:memory:") as memory:
        assert memory.config.in_memory
    path = tmp_path / "db.duckdb"
    with create_plugin(f"duckdb:///{path}") as file:
        file.execute("CREATE TABLE t AS SELECT 1 AS x").close()
    assert path.exists()
    with create_plugin(DuckDBConfig(database=str(path), read_only=True)) as config_made:
        assert config_made.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_keyword_overrides_nest_as_dicts_or_models() -> None:
    from floe_compute import PoolConfig

    plugin = create_plugin("duckdb:///:memory:", pool={"size": 2}, timeouts={"query": 5})
    assert plugin.config.pool.size == 2
    assert plugin.config.pool.timeout == 30  # untouched fields keep their defaults
    assert plugin.config.timeouts.query == 5
    again = create_plugin(plugin.config, pool=PoolConfig(size=3), limits={"threads": 2})
    assert again.config.pool.size == 3
    assert again.config.timeouts.query == 5
    assert again.config.limits.threads == 2


def test_manifest_targets_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOE_TEST_DB", str(tmp_path / "local.duckdb"))
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        "compute:\n"
        "  default: local\n"
        "  timeouts: {query: 0.3}\n"
        "  targets:\n"
        '    local: {url: "duckdb:///${FLOE_TEST_DB}", limits: {memory_limit: 1GB}}\n'
        '    quick: {url: "duckdb:///:memory:", timeouts: {query: 7}}\n'
    )
    with create_plugin("local", manifest=manifest) as local:
        assert local.config.name == "local"
        assert local.config.database == str(tmp_path / "local.duckdb")
        assert local.config.limits.memory_limit == 1_000_000_000  # a ByteSize
        with pytest.raises(QueryTimeoutError) as caught:
            local.execute("SELECT count(*) FROM range(10000000000)").fetchall()
        assert caught.value.timeout == 0.3
    assert create_plugin(manifest=manifest).config.name == "local"
    assert create_plugin("quick", manifest=manifest).config.timeouts.query == 7
    with pytest.raises(ConfigError, match=r"no target 'prod'; targets: local, quick"):
        create_plugin("prod", manifest=manifest)


def test_manifest_missing_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOE_UNSET_PASSWORD", raising=False)
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        'compute:\n  targets:\n    prod: {url: "duckdb:///:memory:", password: "${FLOE_UNSET_PASSWORD}"}\n'
    )
    with pytest.raises(ConfigError, match="FLOE_UNSET_PASSWORD is not set"):
        create_plugin("prod", manifest=manifest)


def test_unknown_scheme_lists_installed_plugins() -> None:
    with pytest.raises(PluginNotFoundError) as caught:
        create_plugin("oracle://scott:tiger@db/orcl")
    message = str(caught.value)
    assert "'oracle'" in message
    assert "duckdb://" in message
    assert "echo://" in message
    assert "tiger" not in message
    assert "duckdb" in caught.value.available


def test_an_unknown_scheme_imports_no_engine() -> None:
    """A typo answers at once: no engine module (and so no driver) is imported to say so."""
    code = (
        "import sys\n"
        "from floe_compute import PluginNotFoundError, create_plugin\n"
        "try:\n"
        "    create_plugin('oracle://db/orcl')\n"
        "except PluginNotFoundError:\n"
        "    pass\n"
        "engines = ('floe_compute.engines', 'floe_compute_echo')\n"
        "print(sorted(m for m in sys.modules if m.startswith(engines)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("url", ["not a url", "duckdb", "://nothing", ""])
def test_malformed_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_plugin(url)
    assert "url" in str(caught.value).lower() or "URL" in str(caught.value)


def test_malformed_url_never_echoes_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        create_plugin("duckdb://user:hunter2@host:notaport/db")
    assert "hunter2" not in str(caught.value)


def test_third_party_plugin_is_discovered_from_its_entry_point() -> None:
    """floe-compute-echo is a separate distribution installed into the test environment."""
    assert {"duckdb", "echo"} <= set(list_plugins())
    with create_plugin("echo:///:memory:") as plugin:
        assert type(plugin).__module__ == "floe_compute_echo"
        assert plugin.name == "echo"
        assert plugin.execute("SELECT 'hi'").fetchall() == [("hi",)]


def test_the_own_engines_are_found_without_reading_every_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The library's own engines come from its own metadata: the scan of every installed
    distribution (tens of ms at each start) is left for other names, listings and errors."""
    from floe_compute import registry

    def no_scan(**_: Any) -> Any:
        raise AssertionError("every installed distribution's entry points were read")

    monkeypatch.setattr(registry, "entry_points", no_scan)
    with create_plugin("duckdb:///:memory:") as plugin:
        assert isinstance(plugin, DuckDBComputePlugin)
    monkeypatch.undo()
    with create_plugin("echo:///:memory:") as plugin:  # a third-party name: found by the scan
        assert type(plugin).__module__ == "floe_compute_echo"


def test_a_third_party_claiming_an_own_engine_name_does_not_replace_it(tmp_path: Path) -> None:
    """Which of two distributions claiming one name wins would depend on directory order; the
    library's own engine always does. The other distribution's new names are still found."""
    info = tmp_path / "floe_compute_rival-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: floe-compute-rival\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[floe.computes]\n"
        "duckdb = floe_compute_echo:EchoComputePlugin\n"
        "rival = floe_compute_echo:EchoComputePlugin\n"
    )
    code = (
        "from floe_compute import create_plugin, list_plugins\n"
        "from floe_compute.registry import get_plugin_class\n"
        "print(create_plugin('duckdb:///:memory:').name, get_plugin_class('duckdb').name,\n"
        "      get_plugin_class('rival').name, 'rival' in list_plugins())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["duckdb", "duckdb", "echo", "True"]


def test_a_subclass_missing_a_hook_names_it() -> None:
    class HalfDone(ComputePlugin):
        name = "half"
        schemes = ("half",)
        db_system = "other_sql"

        def dbt_target(self) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="cancel"):
        HalfDone(DuckDBConfig())  # type: ignore[abstract]


def test_a_subclass_missing_a_declaration_names_it() -> None:
    with pytest.raises(TypeError, match="must declare schemes, db_system"):

        class NoSchemes(ComputePlugin):
            name = "nothing"

            def cancel(self, context: Any) -> None: ...

            def dbt_target(self) -> dict[str, Any]:
                return {}


def test_target_name_without_manifest_explains() -> None:
    with pytest.raises(ConfigError, match="manifest="):
        create_plugin("local")
