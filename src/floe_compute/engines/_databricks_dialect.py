"""The Databricks SQLAlchemy dialect as the plugin uses it: plain tuples, the statement's cursor recorded
for cancel, the query's tags as ``query_tags``, the state of a failed statement, the session's own
catalog and schema when the URL names none, and a ``GetInfo`` ping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from databricks.sqlalchemy.base import DatabricksDialect
from sqlalchemy.dialects import registry
from sqlalchemy.engine.default import DefaultExecutionContext

from floe_compute.context import query_context
from floe_compute.errors import ConfigError

__all__ = ["TIMED_OUT", "DatabricksQuery", "FloeDatabricksDialect"]


@dataclass
class DatabricksQuery:
    """What a query's statement and the engine's ``cancel`` share (``context.state(...)``)."""

    cursor: Any = None
    """The connector's cursor, which publishes the statement's command id before it blocks."""


TIMED_OUT = "floe_timed_out"
"""Set on a connector error whose statement ended in ``TIMEDOUT_STATE`` (the server's statement
timeout): the connector's error carries the state only in the text of its message."""


class TupleCursor:
    """The connector's cursor handing out plain tuples (its rows are a ``Row`` class of its own)."""

    def __init__(self, cursor: Any) -> None:
        object.__setattr__(self, "cursor", cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.cursor, name, value)

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self.cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        rows = self.cursor.fetchmany(self.cursor.arraysize if size is None else size)
        return [tuple(row) for row in rows]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.cursor.fetchall()]


class _ExecutionContext(DefaultExecutionContext):
    def create_default_cursor(self) -> Any:
        return TupleCursor(super().create_default_cursor())


class FloeDatabricksDialect(DatabricksDialect):
    """The connector's dialect: plain tuples, and the query's tags as the statement's ``query_tags``."""

    supports_statement_cache = True
    execution_ctx_cls = _ExecutionContext

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        query = query_context(context)
        if query is None:
            cursor.execute(statement, parameters)
            return
        _refuse_binary(parameters)
        # the connector publishes the statement's command id on this cursor before it blocks
        query.state(DatabricksQuery).cursor = connector_cursor = getattr(cursor, "cursor", cursor)
        try:
            if query.tags:
                cursor.execute(statement, parameters, query_tags=dict(query.tags))
            else:
                cursor.execute(statement, parameters)
        except Exception as exc:
            if _ended_in_timeout(connector_cursor):
                setattr(exc, TIMED_OUT, True)
            raise

    def initialize(self, connection: Any) -> None:
        """Without ``catalog`` (or ``schema``) in the URL, the session's current ones, read at the
        first connect: the connector's dialect would otherwise render ``None`` in its statements."""
        super().initialize(connection)
        if self.catalog is None or self.schema is None:
            catalog, schema = connection.exec_driver_sql("SELECT current_catalog(), current_database()").one()
            self.catalog = self.catalog or catalog
            self.schema = self.schema or schema

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        self.do_execute(cursor, statement, None, context)

    def do_ping(self, dbapi_connection: Any) -> bool:
        """``GetInfo`` on the Thrift session: one round trip and no statement for the warehouse to
        run (the dialect's own ping is a ``SELECT 1``: five round trips on every checkout)."""
        session: Any = getattr(dbapi_connection, "session", None)
        backend: Any = getattr(session, "backend", None)
        if not hasattr(backend, "_client") or not getattr(session, "is_open", False):
            default: Any = super()
            return bool(default.do_ping(dbapi_connection))
        from databricks.sql.thrift_api.TCLIService import ttypes

        types: Any = ttypes
        request = types.TGetInfoReq(session.session_id.to_thrift_handle(), types.TGetInfoType.CLI_SERVER_NAME)
        try:
            response = backend.make_request(backend._client.GetInfo, request, retryable=False)
        except Exception:  # a restarted or unreachable endpoint: the pool opens a new session
            return False
        return bool(response.status.statusCode == types.TStatusCode.SUCCESS_STATUS)


def _refuse_binary(parameters: Any) -> None:
    """The connector has no binary parameter type: it would send ``bytes`` as something else."""
    if not isinstance(parameters, dict):
        return
    for name, value in parameters.items():
        if isinstance(value, bytes | bytearray | memoryview):
            raise ConfigError(
                f"databricks: parameter {name!r} is {type(value).__name__}, which the connector cannot "
                f"bind (it has no binary parameter type): pass it as hex text and use unhex(:{name})",
                engine="databricks",
            )


def _ended_in_timeout(cursor: Any) -> bool:
    """Whether the cursor's failed statement ended in ``TIMEDOUT_STATE``, asked of the server."""
    command = getattr(cursor, "active_command_id", None)
    poll = getattr(getattr(cursor, "backend", None), "_poll_for_status", None)
    if command is None or poll is None:  # never sent, or not the Thrift backend
        return False
    from databricks.sql.thrift_api.TCLIService import ttypes

    try:
        response = poll(command.to_thrift_handle())
    except Exception:  # the statement's error is what the caller needs to hear about
        return False
    return bool(response.operationState == ttypes.TOperationState.TIMEDOUT_STATE)


registry.register("databricks.floe_connector", __name__, "FloeDatabricksDialect")
