"""duckdb-engine's connection wrapper, knowing whether DuckDB has a statement to interrupt.

``interrupt()`` on a DuckDB connection stops its running statement or the result still streaming
from it; on an idle connection it does nothing (the next statement clears the flag). Cancel reports
which of the two it was, so that no message claims an engine cancel that stopped nothing.

Private to :mod:`floe_compute.engines.duckdb`.
"""

from __future__ import annotations

from typing import Any

from duckdb_engine import ConnectionWrapper, CursorWrapper

STATEMENT_ATTRIBUTE = "floe_statement"
"""Set on DuckDB's error to the statements of the transaction that failed, for an error that must
name what they wrote (an Iceberg commit the catalog refuses names no table)."""
_KEPT = 20  # statements of one transaction kept for that


class Connection(ConnectionWrapper):
    busy = False
    """A statement executes, or its result still streams from DuckDB."""

    def __init__(self, c: Any) -> None:
        super().__init__(c)
        self.statements: list[str] = []
        """The statements of the open transaction (the last few)."""

    def cursor(self) -> Cursor:
        return Cursor(self._ConnectionWrapper__c, self)

    def ran(self, statement: str) -> None:
        self.statements = [*self.statements[-_KEPT + 1 :], statement]

    def commit(self) -> None:
        """Commit; an Iceberg catalog may refuse it only now, for a statement run before."""
        statements, self.statements = self.statements, []
        try:
            self._ConnectionWrapper__c.commit()
        except BaseException as exc:
            setattr(exc, STATEMENT_ATTRIBUTE, "\n".join(statements))
            raise

    def rollback(self) -> None:
        self.statements = []
        self._ConnectionWrapper__c.rollback()


class Cursor(CursorWrapper):
    def __init__(self, c: Any, connection: Connection) -> None:
        super().__init__(c, connection)
        self._duckdb = c
        self._owner = connection

    def execute(self, statement: str, parameters: Any = None, context: Any = None) -> None:
        self._owner.busy = True
        self._owner.ran(statement)
        try:
            super().execute(statement, parameters, context)
        except BaseException as exc:
            self._owner.busy = False
            setattr(exc, STATEMENT_ATTRIBUTE, "\n".join(self._owner.statements))
            raise
        if self._duckdb.description is None:  # no rows: nothing is left in DuckDB
            self._owner.busy = False

    def executemany(self, statement: str, parameters: Any = None, context: Any = None) -> None:
        self._owner.busy = True
        try:
            super().executemany(statement, parameters, context)
        finally:
            self._owner.busy = False

    def fetchone(self) -> Any:
        row = self._duckdb.fetchone()
        if row is None:
            self._owner.busy = False
        return row

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows: list[Any] = super().fetchmany(size)
        if len(rows) < (size or 1):  # DuckDB returns fewer rows only at the end
            self._owner.busy = False
        return rows

    def fetchall(self) -> list[Any]:
        rows: list[Any] = self._duckdb.fetchall()
        self._owner.busy = False
        return rows
