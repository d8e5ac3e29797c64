"""DuckDB, the embedded default engine.

One DuckDB database per plugin: a root connection opens it once, and every pooled connection is a
cursor of that root (its own DuckDB connection to the same database). duckdb-engine's default
``SingletonThreadPool`` would give each thread its own empty in-memory database instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from duckdb_engine import ConnectionWrapper
from duckdb_engine import Dialect as DuckDBEngineDialect
from pydantic import model_validator
from sqlalchemy import text
from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL, Connection
from sqlalchemy.engine.interfaces import ReflectedPrimaryKeyConstraint
from sqlalchemy.engine.reflection import ReflectionDefaults

from floe_compute.config import ComputeConfig, parse_size
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    ResourceLimitError,
)
from floe_compute.plugin import ComputePlugin

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DuckDBComputePlugin", "DuckDBConfig"]

MEMORY = ":memory:"


class DuckDBConfig(ComputeConfig):
    """DuckDB in memory (the default) or in a file."""

    url: Any = None
    database: str = MEMORY
    read_only: bool = False

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
        query = dict(url.query)
        if "read_only" in query:
            data.setdefault("read_only", str(query.pop("read_only")).lower() in ("1", "true"))
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

    @property
    def in_memory(self) -> bool:
        return self.database == MEMORY


class FloeDuckDBDialect(DuckDBEngineDialect):
    """duckdb-engine, with primary keys reflected from ``duckdb_constraints()``.

    duckdb-engine inherits PostgreSQL's ``pg_constraint`` query, whose column numbering DuckDB does
    not match, so ``inspect().get_pk_constraint()`` comes back empty.
    """

    supports_statement_cache = False  # as duckdb-engine's own dialect

    def get_multi_pk_constraint(  # type: ignore[override]  # the two supertypes disagree
        self,
        connection: Connection,
        *,
        schema: str | None = None,
        filter_names: Collection[str] | None = None,
        **kw: Any,
    ) -> Iterable[tuple[tuple[str | None, str], ReflectedPrimaryKeyConstraint]]:
        rows = connection.execute(
            text(
                "SELECT table_name, constraint_name, constraint_column_names "
                "FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
                "AND schema_name = coalesce(:schema, current_schema())"
            ),
            {"schema": schema},
        ).all()
        keys: dict[str, ReflectedPrimaryKeyConstraint] = {
            table: {"constrained_columns": list(columns), "name": name} for table, name, columns in rows
        }
        tables = filter_names if filter_names is not None else self.get_table_names(connection, schema)
        return [((schema, t), keys.get(t) or ReflectionDefaults.pk_constraint()) for t in tables]


registry.register("duckdb.floe", __name__, "FloeDuckDBDialect")

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


class DuckDBComputePlugin(ComputePlugin):
    """DuckDB through duckdb-engine, with a QueuePool of cursors over one database."""

    name = "duckdb"
    schemes = ("duckdb",)
    config_class = DuckDBConfig
    db_system = "duckdb"
    default_pre_ping = False  # an embedded database cannot drop its connections
    default_batch_size = 10_000

    _root: duckdb.DuckDBPyConnection | None = None

    @property
    def config(self) -> DuckDBConfig:
        assert isinstance(self._config, DuckDBConfig)
        return self._config

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
            raise self._connection_error(exc, f"cannot open {config.database}") from exc
        root = self._root
        return {"creator": lambda: ConnectionWrapper(root.cursor())}

    def on_dispose(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            root.close()

    def cancel(self, dbapi_connection: Any) -> None:
        # interrupt() reaches only the connection object running the query: the pooled cursor.
        dbapi_connection.interrupt()

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader:
        reader: pa.RecordBatchReader = dbapi_cursor.to_arrow_reader(batch_size)
        return reader

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        message = str(exc).split("\n", 1)[0]
        if isinstance(exc, duckdb.OutOfMemoryException):
            limit = self.config.limits.memory_limit
            named = f"limits.memory_limit={limit}" if limit else "the memory available to DuckDB"
            return ResourceLimitError, f"exceeded {named}: {message}"
        if isinstance(exc, duckdb.IOException) and (holder := _LOCK_HOLDER.search(message)):
            return ConnectionFailedError, (
                f"the database file {self.config.database} is locked by another process "
                f"(PID {holder['pid']}, {holder['exe']})"
            )
        return None

    def dbt_target(self) -> dict[str, Any]:
        config = self.config
        return {
            "type": "duckdb",
            # dbt runs in its own process, so a relative path must not depend on its cwd
            "path": config.database if config.in_memory else str(Path(config.database).resolve()),
            "schema": "main",
            "threads": config.limits.threads or 4,
            # connect-time options: dbt-duckdb applies ``settings`` only after loading extensions
            "config_options": self.database_config(),
        }
