"""DuckDB extensions from their PyPI packages, and the Iceberg catalogs the iceberg extension attaches.

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
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import duckdb
from pydantic import Field, SecretStr, SerializationInfo, field_serializer, field_validator, model_validator

from floe_compute.config import ConfigModel, display_url
from floe_compute.engines._duckdb_storage import S3Storage
from floe_compute.errors import ConfigError, redact

__all__ = [
    "IcebergCatalog",
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
            con.execute(f"INSTALL {_sql(str(path))}")
            if load:
                con.execute(f"LOAD {name}")
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"duckdb: cannot load extension {name!r} from {path}: {first} "
                f"(pip install '{_requirement(name)}')",
                engine="duckdb",
            ) from exc


Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class IcebergCatalog(ConfigModel):
    """An Iceberg REST catalog, ATTACHed under ``name`` so ``SELECT * FROM name.ns.table`` works.

    Credentials are either ``client_id``+``client_secret`` (OAuth2 client credentials) or a
    ready ``token``; with neither, the catalog is called without authorization. They reach
    DuckDB only through a temporary secret, never through a logged statement.
    """

    type: Annotated[str, Field(pattern="^iceberg$")] = "iceberg"
    """The catalog type; only ``iceberg``."""
    name: Identifier
    """The name queries use: ``SELECT * FROM <name>.<namespace>.<table>``."""
    endpoint: str
    """The REST catalog's base URL (``http://`` or ``https://``)."""
    warehouse: str
    """The catalog's warehouse name."""
    client_id: str | None = None
    """OAuth2 client id (with ``client_secret``)."""
    client_secret: SecretStr | None = None
    """OAuth2 client secret (with ``client_id``)."""
    token: SecretStr | None = None
    """A ready bearer token, instead of client credentials."""
    oauth2_server_uri: str | None = None
    """Where client credentials are exchanged for a token; default ``<endpoint>/v1/oauth/tokens``."""
    oauth2_scope: str | None = None
    """The OAuth2 scope to ask for; default: DuckDB's (``PRINCIPAL_ROLE:ALL``)."""
    read_only: bool = False
    """Attach the catalog read-only."""
    options: dict[Identifier, str | int | bool] = Field(default_factory=dict)
    """More ATTACH options, such as ``access_delegation_mode``."""
    s3: S3Storage | None = None
    """The keys for the catalog's S3 storage (give ``scope``: DuckDB picks keys by path); default:
    the credentials the catalog vends with each table, else the target's ``s3``."""

    @field_validator("endpoint", "oauth2_server_uri")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _one_credential(self) -> IcebergCatalog:
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError("give client_id and client_secret together")
        if self.token is not None and self.client_secret is not None:
            raise ValueError("give either token or client_id/client_secret, not both")
        if self.name.lower() in ("main", "memory", "system", "temp"):
            raise ValueError(f"name {self.name!r} is reserved by DuckDB")
        return self

    @property
    def secret_name(self) -> str:
        return f"floe_{self.name.lower()}_secret"

    @property
    def s3_secret_name(self) -> str:
        return f"floe_{self.name.lower()}_s3_secret"

    @property
    def display_endpoint(self) -> str:
        return display_url(self.endpoint)

    @property
    def secrets(self) -> tuple[str, ...]:
        in_endpoint = urlsplit(self.endpoint).password
        found = [s.get_secret_value() for s in self.sensitive().values()]
        found += list(self.s3.secrets) if self.s3 else []
        return tuple(found + ([unquote(in_endpoint), in_endpoint] if in_endpoint else []))

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (redact(value) if key in ("endpoint", "oauth2_server_uri") and value else value)

    @field_serializer("endpoint", "oauth2_server_uri")
    def _dump_endpoint(self, value: str | None, info: SerializationInfo) -> str | None:
        return redact(value) if value and info.mode_is_json() else value

    def sensitive(self) -> dict[str, SecretStr]:
        return {k: s for k, s in (("client_secret", self.client_secret), ("token", self.token)) if s}

    def secret_params(self, sensitive: dict[str, str]) -> dict[str, str]:
        """The secret's parameters, with ``sensitive`` as the credential values (real or templated)."""
        params = {"client_id": self.client_id, **sensitive}
        if self.client_id is not None:  # a secret, unlike ATTACH, has no default token endpoint
            token_uri = self.oauth2_server_uri or f"{self.endpoint}/v1/oauth/tokens"
            params |= {"oauth2_server_uri": token_uri, "oauth2_scope": self.oauth2_scope}
        return {k: v for k, v in params.items() if v is not None}

    def create_secret_sql(self) -> str | None:
        """``CREATE SECRET``: the only statement that holds a credential. Never logged."""
        given = {k: s.get_secret_value() for k, s in self.sensitive().items()}
        if not given:
            return None
        params = ", ".join(f"{k.upper()} {_sql(v)}" for k, v in self.secret_params(given).items())
        return f"CREATE OR REPLACE TEMPORARY SECRET {self.secret_name} (TYPE iceberg, {params})"

    def attach_options(self) -> dict[str, str | int | bool]:
        auth = {} if self.sensitive() else {"authorization_type": "none"}
        return {"endpoint": self.endpoint, **auth, **self.options}

    def attach_sql(self) -> str:
        options = [f"TYPE {self.type}"]
        if self.sensitive():
            options.append(f"SECRET {self.secret_name}")
        if self.read_only:
            options.append("READ_ONLY")
        for key, value in self.attach_options().items():
            shown = str(value).lower() if isinstance(value, bool | int) else _sql(value)
            options.append(f"{key.upper()} {shown}")
        return f"ATTACH {_sql(self.warehouse)} AS {self.name} ({', '.join(options)})"

    def dbt_env_var(self, key: str) -> str:
        """dbt hides ``DBT_ENV_SECRET_*`` variables from its logs and allows them only in profiles."""
        return f"DBT_ENV_SECRET_FLOE_{self.name.upper()}_{key.upper()}"


def _env_ref(name: str) -> str:
    return f"{{{{ env_var('{name}') }}}}"


def _s3_env_var(prefix: str, key: str) -> str:
    return f"DBT_ENV_SECRET_{prefix}_{key.upper()}"


def _s3_prefix(secret_name: str) -> str:
    """``floe_lake_s3_secret`` -> ``FLOE_LAKE_S3``: the env var names of one s3 section."""
    return secret_name.removesuffix("_secret").upper()


def dbt_lake(catalogs: tuple[IcebergCatalog, ...], storages: list[tuple[str, S3Storage]]) -> dict[str, Any]:
    """dbt-duckdb's ``secrets`` and ``attach`` for the catalogs and s3 sections: every credential
    an ``env_var()`` (named ``DBT_ENV_SECRET_*``, which dbt scrubs from its logs)."""
    secrets: list[dict[str, Any]] = [
        {"type": "iceberg", "name": c.secret_name}
        | c.secret_params({k: _env_ref(c.dbt_env_var(k)) for k in c.sensitive()})
        for c in catalogs
        if c.sensitive()
    ]
    for name, storage in storages:
        refs = {k: _env_ref(_s3_env_var(_s3_prefix(name), k)) for k in storage.sensitive()}
        params = storage.secret_params(refs)
        secrets.append(
            {"type": "s3", "name": name}
            | {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        )
    attach = [
        {"path": c.warehouse, "alias": c.name, "type": "iceberg", "read_only": c.read_only}
        | ({"secret": c.secret_name} if c.sensitive() else {})
        | {"options": c.attach_options()}
        for c in catalogs
    ]
    return ({"secrets": secrets} if secrets else {}) | ({"attach": attach} if attach else {})


def dbt_lake_env(
    catalogs: tuple[IcebergCatalog, ...], storages: list[tuple[str, S3Storage]]
) -> dict[str, str]:
    """The values of the ``env_var()`` references :func:`dbt_lake` writes."""
    env = {c.dbt_env_var(k): s.get_secret_value() for c in catalogs for k, s in c.sensitive().items()}
    for name, storage in storages:
        env |= {
            _s3_env_var(_s3_prefix(name), k): s.get_secret_value() for k, s in storage.sensitive().items()
        }
    return env
