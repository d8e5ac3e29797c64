"""DuckDB, the embedded default engine.

One DuckDB database per plugin: a root connection opens it once, and every pooled connection is a
cursor of that root (its own DuckDB connection to the same database). duckdb-engine's default
``SingletonThreadPool`` would give each thread its own empty in-memory database instead.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import duckdb
from pydantic import Field, model_validator
from sqlalchemy.engine import URL

from floe_compute.config import ComputeConfig
from floe_compute.context import QueryContext
from floe_compute.engines import (
    _duckdb_dialect,  # noqa: F401  (registers duckdb.floe)
    _duckdb_load,
)
from floe_compute.engines import _duckdb_extensions as extensions
from floe_compute.engines._duckdb_connection import STATEMENT_ATTRIBUTE
from floe_compute.engines._duckdb_connection import Connection as DuckDBConnection
from floe_compute.engines._duckdb_extensions import IcebergCatalog
from floe_compute.engines._duckdb_storage import S3Storage, describe_storage_error, written_tables
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    ResourceLimitError,
)
from floe_compute.plugin import ComputePlugin
from floe_compute.units import format_size, parse_size

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DuckDBComputePlugin", "DuckDBConfig", "IcebergCatalog", "S3Storage"]

log = logging.getLogger("floe_compute")

MEMORY = ":memory:"


class DuckDBConfig(ComputeConfig):
    """DuckDB in memory (the default) or in a file."""

    url: Any = None
    """``duckdb:///path.duckdb`` or ``duckdb:///:memory:``; optional when ``database`` is given.
    Query parameters other than ``read_only`` become ``settings``."""
    database: str = MEMORY
    """The database file, or ``:memory:``."""
    read_only: bool = False
    """Open the file read-only (several processes may then read it at once)."""
    extensions: tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], ...] = ()
    """Loaded from their PyPI packages (``duckdb-extension-<name>``); never downloaded."""
    extension_directory: Path | None = None
    """Where the extension files are installed (dbt reads them there too); default: a user cache."""
    attach: tuple[IcebergCatalog, ...] = ()
    """Iceberg REST catalogs attached when the database opens; visible to every pooled connection."""
    s3: S3Storage | None = None
    """S3 (or an S3 API) keys and endpoint, for ``s3://`` paths: a DuckDB secret made at connect."""

    @model_validator(mode="before")
    @classmethod
    def _url_and_database(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("url") is None:
            database = str(data.get("database") or MEMORY)
            data["url"] = f"duckdb:///{database}"
            return data
        url = ComputeConfig._parse_url(data["url"])
        _refuse_host(url)
        query = dict(url.query)
        if "read_only" in query:
            data.setdefault("read_only", query.pop("read_only"))  # pydantic's true/false spellings
        if query:
            data["settings"] = {**query, **data.get("settings", {})}
        data.setdefault("database", url.database or MEMORY)
        data["url"] = url.set(query={})
        return data

    @model_validator(mode="after")
    def _read_only_needs_file(self) -> DuckDBConfig:
        if self.read_only and self.database == MEMORY:
            raise ValueError("read_only: an in-memory database cannot be opened read-only")
        return self

    @model_validator(mode="after")
    def _unique_catalog_names(self) -> DuckDBConfig:
        names = [c.name.lower() for c in self.attach]
        if len(names) != len(set(names)):
            raise ValueError("attach: catalog names must be unique")
        scopes = [s.scope for s in self.storages]
        if len(scopes) != len(set(scopes)):
            raise ValueError(
                "s3: give each s3 section its own scope (s3://bucket/prefix): DuckDB picks keys by path"
            )
        return self

    @property
    def storages(self) -> list[S3Storage]:
        """Every ``s3`` section: the target's, then each attached catalog's."""
        return [s for s in (self.s3, *(c.s3 for c in self.attach)) if s is not None]

    def s3_secrets(self) -> list[tuple[str, S3Storage]]:
        """The DuckDB secret name of each ``s3`` section."""
        named = [(c.s3_secret_name, c.s3) for c in self.attach if c.s3 is not None]
        return ([("floe_s3_secret", self.s3)] if self.s3 else []) + named

    @property
    def in_memory(self) -> bool:
        return self.database == MEMORY

    @property
    def secrets(self) -> tuple[str, ...]:
        in_s3 = self.s3.secrets if self.s3 else ()
        return super().secrets + in_s3 + tuple(s for c in self.attach for s in c.secrets)

    @property
    def all_extensions(self) -> tuple[str, ...]:
        """The extensions to load: the configured ones, what they need, and what ``attach`` needs."""
        needed = [*self.extensions, *(["iceberg", "httpfs"] if self.attach else [])]
        needed += [name for storage in self.storages for name in storage.extensions]
        return extensions.with_dependencies(needed)

    @property
    def extension_path(self) -> Path | None:
        chosen = self.extension_directory or self.settings.get("extension_directory")
        if chosen:
            return Path(str(chosen)).resolve()
        return extensions.default_extension_directory() if self.all_extensions else None


def _refuse_host(url: URL) -> None:
    """``duckdb://x.db`` (two slashes) names a host, not a file: duckdb-engine would open an
    in-memory database and the data written would be gone when the process ends."""
    if not (url.host or url.username or url.port):
        return
    path = "/".join(part for part in (url.host, url.database) if part)
    raise ValueError(
        f"url: a DuckDB URL has no host part; did you mean duckdb:///{path}? (three slashes and a "
        f"path relative to the working directory; an absolute path takes four: duckdb:////{path})"
    )


# DuckDB's own wording at the start of the message, not words a quoted path or literal may contain
_LOCK_HOLDER = re.compile(
    r'^IO Error: Could not set lock on file ".*": '
    r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)"
)
_MISSING_EXTENSION = re.compile(
    r'Extension "[^"]*?(?P<file>\w+)\.duckdb_extension" not found|exists in the (?P<ext>\w+) extension'
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scrubbed(exc: BaseException, scrub: Any) -> BaseException:
    """The driver's error with secrets removed from its message, to keep as ``__cause__``."""
    try:
        return type(exc)(scrub(str(exc)))
    except Exception:
        return ConnectionFailedError(scrub(str(exc)))


class DuckDBComputePlugin(ComputePlugin):
    """DuckDB through duckdb-engine, with a QueuePool of cursors over one database."""

    name = "duckdb"
    schemes = ("duckdb",)
    config_class = DuckDBConfig
    load_path = "an Arrow stream registered as a view, read by one INSERT or CREATE TABLE AS"
    load_batches = _duckdb_load.load_batches
    db_system = "duckdb"
    sql_dialect = "duckdb"
    default_pre_ping = False  # an embedded database cannot drop its connections
    runs_scripts = True  # DuckDB runs every statement of a string and returns the last one's rows
    default_batch_size = 10_000
    short_batch_ends = True  # fetchmany() loops fetchone() until it has the rows or the end

    _root: duckdb.DuckDBPyConnection | None = None

    if TYPE_CHECKING:  # the core checked it is a DuckDBConfig (config_class); no override to call

        @property
        def config(self) -> DuckDBConfig: ...

    def database_config(self) -> dict[str, Any]:
        """DuckDB configuration for the database: the limits, then the session settings."""
        limits = self.config.limits
        options: dict[str, Any] = {
            # nothing is ever downloaded at run time
            "autoinstall_known_extensions": False,
        }
        if limits.memory_limit is not None:
            options["memory_limit"] = f"{parse_size(limits.memory_limit)}B"
        if limits.threads is not None:
            options["threads"] = limits.threads
        if limits.temp_directory is not None:
            options["temp_directory"] = str(limits.temp_directory)
        if limits.max_temp_directory_size is not None:
            options["max_temp_directory_size"] = f"{parse_size(limits.max_temp_directory_size)}B"
        options.update(self.config.settings)
        if self.config.extension_path is not None:
            options["extension_directory"] = str(self.config.extension_path)
        return options

    def engine_url(self) -> URL:
        return self.config.sqlalchemy_url().set(drivername="duckdb+floe")

    def engine_options(self) -> dict[str, Any]:
        config = self.config
        try:
            self._root = duckdb.connect(
                config.database, read_only=config.read_only, config=self.database_config()
            )
        except duckdb.InvalidInputException as exc:
            raise ConfigError(f"duckdb: invalid setting: {exc}", engine=self.name) from exc
        except duckdb.Error as exc:
            raise self.connection_error(exc, f"cannot open {config.database}") from exc
        root = self._root
        try:
            self._prepare(root)
        except BaseException:
            self.on_dispose()
            raise
        return {"creator": lambda: DuckDBConnection(root.cursor())}

    def _prepare(self, root: duckdb.DuckDBPyConnection) -> None:
        """Load the extensions and attach the catalogs, once per database.

        Extensions, secrets and attached catalogs belong to the DuckDB database, not to one
        connection, so every pooled cursor (and every thread) sees what is done here.
        """
        config = self.config
        if config.extension_path is not None:
            config.extension_path.mkdir(parents=True, exist_ok=True)
            extensions.install_and_load(root, config.all_extensions)
        for name, storage in config.s3_secrets():
            scope = storage.scope or "every s3:// path"
            self._run_hidden(root, [storage.create_secret_sql(name)], f"create the S3 secret for {scope}")
        for catalog in config.attach:
            where = f"Iceberg catalog {catalog.name!r} at {catalog.display_endpoint}"
            statements = [catalog.create_secret_sql(), catalog.attach_sql()]
            self._run_hidden(root, [sql for sql in statements if sql is not None], f"attach {where}")
            log.info("duckdb: attached %s", where)

    def _run_hidden(self, root: duckdb.DuckDBPyConnection, statements: list[str], doing: str) -> None:
        """Run statements that hold credentials: the driver's error may quote them, so the error
        chains a scrubbed copy, raised outside the ``except`` so the original is not its context."""
        failure: ConnectionFailedError | None = None
        try:
            for sql in statements:
                root.execute(sql)
        except duckdb.Error as exc:
            failure = ConnectionFailedError(
                f"duckdb: cannot {doing}: {self.scrub(_first_line(exc))}", engine=self.name
            )
            failure.__cause__ = self.driver_cause(_scrubbed(exc, self.scrub))
        if failure is not None:
            raise failure

    def on_dispose(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            root.close()

    @property
    def survives_disconnect_reason(self) -> str | None:  # type: ignore[override]
        return "an in-memory database" if self.config.in_memory else None

    def cancel(self, context: QueryContext) -> bool:
        # interrupt() reaches only the connection object running the query: the pooled cursor.
        # Read first: a statement that starts after the interrupt clears it (the core cancels again)
        connection = context.dbapi_connection
        busy = bool(getattr(connection, "busy", True))
        connection.interrupt()
        return busy

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader:
        reader: pa.RecordBatchReader = dbapi_cursor.to_arrow_reader(batch_size)
        return reader

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        message = str(exc).split("\n", 1)[0]
        if isinstance(exc, duckdb.OutOfMemoryException):
            limit = self.config.limits.memory_limit
            named = f"limits.memory_limit={format_size(limit)}" if limit else "the memory available to DuckDB"
            return ResourceLimitError, f"exceeded {named}: {message}"
        if isinstance(exc, duckdb.InterruptException):
            # not our watchdog or cancel() (the core checks those first): Ctrl-C in this process
            return QueryCancelledError, f"interrupted: {message}"
        if isinstance(exc, duckdb.IOException) and (holder := _LOCK_HOLDER.match(message)):
            return ConnectionFailedError, (
                f"the database file {self.config.database} is locked by another process "
                f"(PID {holder['pid']}, {holder['exe']})"
            )
        if isinstance(exc, duckdb.IOException | duckdb.HTTPException | duckdb.TransactionException) and (
            found := describe_storage_error(str(exc), self.config.storages, list(self.config.attach))
        ):
            kind, text = found
            if kind == "conflict":
                tables = written_tables(getattr(exc, STATEMENT_ATTRIBUTE, ""), self.config.attach)
                text = f"{text} (writing {', '.join(tables)})" if tables else text
            cls = QueryError if kind in ("conflict", "query") else ConnectionFailedError
            return cls, f"{text}: {message}"
        if missing := _MISSING_EXTENSION.search(str(exc)):
            name = missing["file"] or missing["ext"]
            return QueryError, (
                f"the DuckDB extension {name!r} is not loaded: add it to DuckDBConfig.extensions, "
                f"which loads it from the {extensions.package_name(name)} package (nothing is "
                f"downloaded at run time): {message}"
            )
        if "no version-hint could be found" in message:
            return QueryError, (
                "iceberg_scan needs the table's metadata file (<table>/metadata/<n>-<uuid>.metadata.json), "
                f"not its directory, when the writer leaves no version-hint.text: {message}"
            )
        return None

    def dbt_target(self) -> dict[str, Any]:
        config = self.config
        target: dict[str, Any] = {
            "type": "duckdb",
            # dbt runs in its own process, so a relative path must not depend on its cwd
            "path": config.database if config.in_memory else str(Path(config.database).resolve()),
            "schema": "main",
            "threads": config.limits.threads or 4,
            # connect-time options: dbt-duckdb applies ``settings`` only after loading extensions;
            # not its ``extensions`` key either, which would INSTALL (download) them
            "config_options": self.database_config(),
        }
        if config.extension_path is not None:
            # dbt autoloads from the directory: make sure it is filled even before connect()
            config.extension_path.mkdir(parents=True, exist_ok=True)
            directory = {"extension_directory": str(config.extension_path)}
            with duckdb.connect(config={**directory, "autoinstall_known_extensions": False}) as con:
                extensions.install_and_load(con, config.all_extensions, load=False)
        return target | extensions.dbt_lake(config.attach, config.s3_secrets())

    def dbt_env(self) -> dict[str, str]:
        """The environment a dbt process needs for :meth:`dbt_profile`: the lake's secrets."""
        return extensions.dbt_lake_env(self.config.attach, self.config.s3_secrets())
