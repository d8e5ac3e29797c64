"""The Snowflake dialect under the engine: per-statement parameters (timeout, tags, our own
request id for cancel), sessions whose abort failed never reused, and the per-query state that the
dialect and the engine's ``cancel`` share."""

from __future__ import annotations

import json
import math
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from snowflake.sqlalchemy.snowdialect import SnowflakeDialect
from sqlalchemy.dialects import registry

from floe_compute.context import QueryContext, query_context
from floe_compute.engines._snowflake_retry import QUERY
from floe_compute.errors import ConfigError

__all__ = ["FloeSnowflakeDialect", "SnowflakeQuery", "Untrusted", "statement_parameters", "untrusted"]

QUERY_TAG_MAX = 2000  # Snowflake's limit on QUERY_TAG


@dataclass
class SnowflakeQuery:
    """What a query's statement and its ``cancel`` share (``context.state(SnowflakeQuery)``)."""

    request_id: str | None = None
    """Our own request id of the statement, which an abort-request names."""
    sql: str = ""
    aborted: str | None = None
    """The request id Snowflake acknowledged an abort of."""
    abort_attempts: int = 0


class Untrusted(Exception):
    """Ends a session whose abort failed: the core discards it, closing it ends what still runs."""


untrusted: weakref.WeakSet[Any] = weakref.WeakSet()  # driver connections awaiting an abort


class FloeSnowflakeDialect(SnowflakeDialect):  # type: ignore[misc]
    """``snowflake-sqlalchemy`` with per-statement parameters, and no foreign keys to nowhere."""

    supports_statement_cache = False  # as the base dialect

    @classmethod
    def import_dbapi(cls) -> Any:
        from snowflake import connector

        return connector

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        self._execute(cursor, statement, (parameters,), context)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        self._execute(cursor, statement, (), context)

    def _execute(self, cursor: Any, statement: str, parameters: tuple[Any, ...], context: Any) -> None:
        query = query_context(context)
        if query is None:
            cursor.execute(statement, *parameters)
            return
        # our own request id, so that cancel() can name this query in an abort-request
        request_id = str(uuid.uuid4())
        state = query.state(SnowflakeQuery)
        state.request_id, state.sql = request_id, statement
        params = {"requestId": request_id, **statement_parameters(query)}
        running = QUERY.set(query)  # the connector's pauses between re-sends end at its deadline
        try:
            cursor.execute(statement, *parameters, _statement_params=params)
        finally:
            QUERY.reset(running)

    def do_rollback(self, dbapi_connection: Any) -> None:
        # SQLAlchemy passes the pool's proxy; the cancel hook knows the driver's connection
        if getattr(dbapi_connection, "dbapi_connection", dbapi_connection) in untrusted:
            raise Untrusted("the abort-request for a query on this session failed")
        super().do_rollback(dbapi_connection)

    def _parse_fk_rows(self, rows: Any, same_schema_targets: Any) -> Any:
        """Drop foreign keys that name no table (fakesnow answers ``SHOW IMPORTED KEYS`` so)."""
        parsed = super()._parse_fk_rows(rows, same_schema_targets)
        return {
            table: [fk for fk in fks if fk.get("referred_table")] for table, fks in parsed.items() if table
        }


registry.register("snowflake.floe", __name__, "FloeSnowflakeDialect")


def statement_parameters(context: QueryContext) -> dict[str, Any]:
    """``STATEMENT_TIMEOUT_IN_SECONDS`` (whole seconds, rounded up) and ``QUERY_TAG`` (the tags and
    the query id as JSON) for one query."""
    params: dict[str, Any] = {}
    if context.timeout is not None:
        params["STATEMENT_TIMEOUT_IN_SECONDS"] = max(1, math.ceil(context.timeout))
    tag = json.dumps({**context.tags, "query_id": context.query_id}, separators=(",", ":"))
    if len(tag) > QUERY_TAG_MAX:
        raise ConfigError(
            f"tags: as Snowflake's QUERY_TAG they take {len(tag)} characters; the limit is {QUERY_TAG_MAX}"
        )
    params["QUERY_TAG"] = tag
    return params
