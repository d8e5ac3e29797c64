"""The SQLAlchemy dialect of the Spark Connect engine: the Thrift engine's Spark SQL dialect (PyHive's
compiler, with its fixes for Spark's reflection) over :mod:`._spark_connect_dbapi`.

Private to :mod:`floe_compute.engines.spark_connect`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects import registry

from floe_compute.context import StatementStopped, query_context
from floe_compute.engines import _spark_connect_dbapi as dbapi
from floe_compute.engines._spark_thrift import FloeSparkDialect


@dataclass
class SparkConnectQuery:
    """What the dialect and ``cancel`` share for one query: its operation tag and session."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    tags: tuple[str, ...] = ()
    """Job tags for the query's id and its tags, set by ``begin_query``."""
    operation_tag: str | None = None
    connection: dbapi.Connection | None = None
    cancelled: bool = False


class SparkConnectDialect(FloeSparkDialect):
    """Spark SQL as the Thrift engine compiles it, sent as Spark Connect ``SQL`` relations."""

    name = "spark"
    driver = "floe_connect"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return dbapi

    def create_connect_args(self, url: Any) -> Any:  # the plugin's ``creator`` opens connections
        return [], {}

    def _execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> None:
        query = query_context(context)
        if query is None or not isinstance(cursor, dbapi.Cursor):
            cursor.execute(statement, parameters)
            return
        state = query.state(SparkConnectQuery)
        with state.lock:  # a cancel from now on interrupts the statement's tag
            if state.cancelled:
                raise StatementStopped
            state.connection = cursor.connection
            tag = state.operation_tag = f"floe-op-{query.query_id}"
        cursor.execute(statement, parameters, tag=tag, tags=state.tags)

    def do_ping(self, dbapi_connection: Any) -> bool:
        """A config RPC on the session: no statement to plan. A restarted server has forgotten
        the session: the pool opens a new one."""
        return bool(dbapi_connection.ping())

    def is_disconnect(self, e: Exception, connection: Any, cursor: Any) -> bool:
        if not isinstance(e, dbapi.Error):
            return False
        return e.grpc_code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") or e.error_class in dbapi.SESSION_GONE


registry.register("spark.floe_connect", __name__, "SparkConnectDialect")
