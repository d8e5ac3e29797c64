"""duckdb-engine's dialect with the fixes the DuckDB engine needs (registered as ``duckdb.floe``).

Private to :mod:`floe_compute.engines.duckdb`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from duckdb_engine import Dialect as DuckDBEngineDialect
from duckdb_engine import DuckDBIdentifierPreparer
from sqlalchemy import text
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.base import PGIdentifierPreparer
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import ReflectedPrimaryKeyConstraint
from sqlalchemy.engine.reflection import ReflectionDefaults


class _IdentifierPreparer(DuckDBIdentifierPreparer):
    """duckdb-engine's quoting rules, without its constructor's query for DuckDB's reserved words.

    That query runs on ``duckdb``'s module-level default connection, and so opens a second
    in-memory database in the process (its memory, its threads, and a tenth of a short CLI
    query's run). :meth:`FloeDuckDBDialect.initialize` reads the words from the plugin's own
    database instead, at the first connect, before any statement is compiled.
    """

    def __init__(self, dialect: Any, **kwargs: Any) -> None:
        PGIdentifierPreparer.__init__(self, dialect, **kwargs)
        # its own set: duckdb-engine adds DuckDB's words to PostgreSQL's shared class-level set
        self.reserved_words = set(self.reserved_words)


class FloeDuckDBDialect(DuckDBEngineDialect):
    """duckdb-engine, with primary keys reflected from ``duckdb_constraints()``.

    duckdb-engine inherits PostgreSQL's ``pg_constraint`` query, whose column numbering DuckDB does
    not match, so ``inspect().get_pk_constraint()`` comes back empty.
    """

    supports_statement_cache = False  # as duckdb-engine's own dialect
    preparer = _IdentifierPreparer

    def initialize(self, connection: Connection) -> None:
        super().initialize(connection)
        reserved = connection.exec_driver_sql(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'"
        ).scalars()
        self.identifier_preparer.reserved_words.update(reserved)
        self.identifier_preparer._strings.clear()  # nothing quoted yet; never stale either way

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


registry.register("duckdb.floe", "floe_compute.engines._duckdb_dialect", "FloeDuckDBDialect")
