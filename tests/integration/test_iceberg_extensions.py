"""DuckDB extensions come from their PyPI packages: installed into a directory, never downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pytest

from floe_compute import ConfigError, QueryError, create_plugin

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures"]  # sets sys.path for ``fixtures``, once collected
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]

PLATFORM_DIR = f"v{duckdb.__version__}"


def test_extensions_are_installed_from_their_packages_and_loaded(extension_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "ext"  # empty: this plugin fills it
    with create_plugin(extensions=["iceberg", "httpfs"], extension_directory=directory) as plugin:
        rows = plugin.execute(
            "SELECT extension_name, install_path, installed_from FROM duckdb_extensions() "
            "WHERE loaded AND install_mode <> 'STATICALLY_LINKED' ORDER BY 1"
        ).fetchall()
        autoinstall = plugin.execute("SELECT current_setting('autoinstall_known_extensions')").fetchall()
    # avro comes along: iceberg loads it during its own initialisation
    assert [name for name, _, _ in rows] == ["avro", "httpfs", "iceberg"]
    for name, install_path, installed_from in rows:
        assert Path(install_path).is_relative_to(directory / PLATFORM_DIR)
        # installed from the wheel's file, not from extensions.duckdb.org
        assert installed_from.endswith(
            f"duckdb_extension_{name}/extensions/{PLATFORM_DIR}/{name}.duckdb_extension"
        )
    assert autoinstall == [(False,)]


def test_loaded_extensions_serve_every_pooled_connection(
    extension_dir: Path, iceberg_table: IcebergTableFixture
) -> None:
    scan = f"SELECT count(*) FROM iceberg_scan('{iceberg_table.metadata_location}')"
    with create_plugin(extensions=["iceberg"], extension_directory=extension_dir, pool={"size": 3}) as plugin:
        held = [plugin.execute(scan) for _ in range(3)]  # three cursors at once
        assert [r.fetchall() for r in held] == [[(iceberg_table.rows,)]] * 3
        for result in held:
            result.close()


def test_an_extension_not_configured_fails_at_once_with_a_hint(
    tmp_path: Path, iceberg_table: IcebergTableFixture
) -> None:
    # this plugin did not ask for iceberg: DuckDB must neither download it nor hang trying
    with create_plugin(extension_directory=tmp_path) as plugin, pytest.raises(QueryError) as caught:
        plugin.execute(f"SELECT count(*) FROM iceberg_scan('{iceberg_table.metadata_location}')")
    message = str(caught.value)
    assert "extension 'iceberg' is not loaded: add it to DuckDBConfig.extensions" in message
    assert "duckdb-extension-iceberg" in message
    assert "Failed to download" not in message
    assert not list(tmp_path.rglob("*.duckdb_extension"))


def test_a_missing_extension_package_is_a_config_error_naming_it(extension_dir: Path, tmp_path: Path) -> None:
    plugin = create_plugin(extensions=["spatial"], extension_directory=tmp_path)
    with pytest.raises(ConfigError) as caught:
        plugin.connect()
    assert f"pip install 'duckdb-extension-spatial=={duckdb.__version__}'" in str(caught.value)
    assert not plugin.connected


def _fake_package(site: Path, name: str, version: str, payload: bytes) -> Path:
    """A ``duckdb-extension-<name>`` wheel's layout, built for DuckDB ``version``."""
    package = site / f"duckdb_extension_{name}"
    (package / "extensions" / f"v{version}").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "extensions" / f"v{version}" / f"{name}.duckdb_extension").write_bytes(payload)
    info = site / f"duckdb_extension_{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: duckdb-extension-{name}\nVersion: {version}\n"
    )
    return package


def test_a_package_built_for_another_duckdb_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extension_dir: Path
) -> None:
    real = Path(duckdb.__file__)  # any bytes do: the version folder is what is wrong
    _fake_package(tmp_path / "site", "iceberg", "1.4.4", real.read_bytes()[:64])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError) as caught:
        create_plugin(extensions=["iceberg"], extension_directory=tmp_path / "ext").connect()
    message = str(caught.value)
    assert "duckdb-extension-iceberg 1.4.4 is built for v1.4.4" in message
    assert f"this is DuckDB v{duckdb.__version__}" in message
    assert f"pip install 'duckdb-extension-iceberg=={duckdb.__version__}'" in message


def test_a_file_duckdb_refuses_is_a_config_error_naming_package_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extension_dir: Path
) -> None:
    package = _fake_package(tmp_path / "site", "iceberg", duckdb.__version__, b"not an extension")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError) as caught:
        create_plugin(extensions=["iceberg"], extension_directory=tmp_path / "ext").connect()
    message = str(caught.value)
    assert f"cannot load extension 'iceberg' from {package}" in message
    assert f"pip install 'duckdb-extension-iceberg=={duckdb.__version__}'" in message


def test_extensions_already_in_the_directory_are_reused(extension_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "ext"
    with create_plugin(extensions=["iceberg"], extension_directory=directory):
        pass
    installed = sorted(p.name for p in directory.rglob("*.duckdb_extension"))
    assert installed == ["avro.duckdb_extension", "iceberg.duckdb_extension"]
    before = {p: p.stat().st_mtime_ns for p in directory.rglob("*.duckdb_extension")}
    with create_plugin(extensions=["iceberg"], extension_directory=directory) as plugin:
        assert plugin.execute(
            "SELECT count(*) FROM duckdb_extensions() WHERE loaded AND extension_name = 'iceberg'"
        ).fetchall() == [(1,)]
    assert {p: p.stat().st_mtime_ns for p in directory.rglob("*.duckdb_extension")} == before
    shutil.rmtree(directory)


def test_extension_names_are_validated() -> None:
    with pytest.raises(ConfigError, match="extensions"):
        create_plugin(extensions=["iceberg'; DROP TABLE x; --"])
