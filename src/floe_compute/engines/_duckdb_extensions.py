"""DuckDB extensions from their PyPI packages, never from DuckDB's download server.

DuckDB publishes extensions as wheels named ``duckdb-extension-<name>``; each holds
``duckdb_extension_<name>/extensions/v<duckdb version>/<name>.duckdb_extension`` and loads only
into that exact DuckDB version. We ``INSTALL`` the file into an ``extension_directory`` (so dbt,
which opens its own database, finds the same files) and ``LOAD`` it from there; with
``autoinstall_known_extensions`` off, nothing can reach the network.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb

from floe_compute.errors import ConfigError

__all__ = [
    "default_extension_directory",
    "extension_file",
    "install_and_load",
    "package_name",
    "with_dependencies",
]

# Extensions another one loads during its own initialisation: they must be installed first.
DEPENDENCIES: dict[str, tuple[str, ...]] = {"iceberg": ("avro",)}


def package_name(name: str) -> str:
    return f"duckdb-extension-{name.replace('_', '-')}"


def _requirement(name: str) -> str:
    return f"{package_name(name)}=={duckdb.__version__}"


def with_dependencies(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` in load order, each preceded by what it needs, without repeats."""
    ordered: list[str] = []
    for name in names:
        for needed in (*DEPENDENCIES.get(name, ()), name):
            if needed not in ordered:
                ordered.append(needed)
    return tuple(ordered)


def default_extension_directory() -> Path:
    """A per-user cache, so the 80 MB of iceberg+httpfs are copied once, not per process."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "floe-compute" / "duckdb-extensions"


def extension_file(name: str) -> Path:
    """The extension file in its PyPI package, or a :class:`ConfigError` saying what to install."""
    module = f"duckdb_extension_{name.replace('-', '_')}"
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"duckdb: extension {name!r} needs the package {_requirement(name)} "
            f"(pip install '{_requirement(name)}'"
            + (", or floe-compute[iceberg])" if name in ("iceberg", "avro", "httpfs") else ")"),
            engine="duckdb",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    path = folder / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        built_for = sorted(p.name for p in folder.glob("v*")) or ["no DuckDB version"]
        try:
            installed = importlib.metadata.version(package_name(name))
        except importlib.metadata.PackageNotFoundError:
            installed = "?"
        raise ConfigError(
            f"duckdb: extension {name!r}: {package_name(name)} {installed} is built for "
            f"{', '.join(built_for)}, but this is DuckDB v{duckdb.__version__}: "
            f"pip install '{_requirement(name)}'",
            engine="duckdb",
        )
    return path


def _statically_linked(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT extension_name FROM duckdb_extensions() WHERE install_mode = 'STATICALLY_LINKED'"
    ).fetchall()
    return {row[0] for row in rows}


def install_and_load(con: duckdb.DuckDBPyConnection, names: Iterable[str], *, load: bool = True) -> None:
    """INSTALL each extension from its package into the connection's ``extension_directory``.

    Loading on one connection loads it for the whole database, so every cursor sees it.
    """
    builtin = _statically_linked(con)
    for name in with_dependencies(names):
        if name in builtin:
            continue
        path = extension_file(name)
        try:
            con.execute(f"INSTALL '{_quote(str(path))}'")
            if load:
                con.execute(f"LOAD {name}")
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"duckdb: cannot load extension {name!r} from {path}: {first} "
                f"(pip install '{_requirement(name)}')",
                engine="duckdb",
            ) from exc


def _quote(value: str) -> str:
    return value.replace("'", "''")
