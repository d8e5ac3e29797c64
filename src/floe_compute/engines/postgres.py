"""PostgreSQL through psycopg 3.

Results stream through server-side cursors (``DECLARE`` + ``FETCH``), so memory stays flat whatever
the result size. A per-query timeout is applied twice: ``SET LOCAL statement_timeout`` inside the
query's own transaction (it ends with the transaction, so it never leaks into the next checkout, and
it stops the statement even if this process dies), and the core's watchdog, which sends a protocol
cancel request when the deadline passes (the server timeout applies to each ``FETCH``, not to a
whole streamed result).
"""

from __future__ import annotations

import collections
import itertools
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

import psycopg
from pydantic import model_validator
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg, PGExecutionContext_psycopg
from sqlalchemy.engine import URL, Connection
from sqlalchemy.engine.cursor import BufferedRowCursorFetchStrategy
from sqlalchemy.sql import expression

from floe_compute.config import ComputeConfig
from floe_compute.context import QueryContext, SessionPin, query_context
from floe_compute.engines import (
    _postgres_blocking,
    _postgres_copy,
    _postgres_load,
    _postgres_ping,
    _postgres_values,
)
from floe_compute.errors import (
    ComputeError,
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
)
from floe_compute.plugin import ComputePlugin
from floe_compute.sql import declarable

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["PostgresComputePlugin", "PostgresConfig"]

CANCEL_TIMEOUT_S = 1.0
"""How long a cancel request may take. The watchdog holds the query's handle meanwhile, so the
connection cannot go back to the pool (and a late cancel cannot hit the next query on it)."""

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_CONNECTION_LOST = {"57P01", "57P02", "57P03", "53300"}
_STATEMENT_TIMEOUT = "canceling statement due to statement timeout"  # the server's text (lc_messages=C)
_CURSOR_NUMBERS = itertools.count(1)


class PostgresConfig(ComputeConfig):
    """A PostgreSQL server: ``postgresql://`` or ``postgresql+psycopg://user@host:port/db``."""

    dbt_schema: str = "public"
    """The schema dbt builds models in."""
    dbt_password_env: str = "PGPASSWORD"
    """The environment variable the dbt profile reads the password from (never written to it)."""
    infinity: Literal["error", "clamp"] = "error"
    """Dates and timestamps ``infinity``/``-infinity``, which Python cannot hold: a ``QueryError``
    naming the column, or ``clamp`` to read them as ``date.max``/``datetime.max`` (``.min``)."""

    engine_title = "PostgreSQL"
    unsupported_limits: ClassVar[Mapping[str, str]] = {
        "memory_limit": "PostgreSQL has no per-query memory limit; set work_mem in settings",
        "temp_directory": "the temp directory is a server setting (temp_tablespaces)",
        "max_temp_directory_size": "temp_file_limit can only be set by a superuser, on the server",
    }

    @model_validator(mode="after")
    def _check(self) -> PostgresConfig:
        backend, _, driver = self.url.drivername.partition("+")
        if backend != "postgresql" or driver not in ("", "psycopg", "floe_psycopg"):
            raise ValueError(
                f"url: {self.url.drivername} is not supported; use postgresql+psycopg:// (psycopg 3)"
            )
        for name in self.settings:
            if not _SETTING_NAME.match(name):
                raise ValueError(f"settings: {name!r} is not a PostgreSQL setting name")
        return self


class _CommentedServerCursor(_postgres_copy.CopySource):
    """A server-side cursor whose ``FETCH`` statements carry the query's sqlcommenter comment.

    A streamed query runs while its ``FETCH`` runs, and that is the statement ``pg_stat_activity``
    shows then; the comment on the ``DECLARE`` alone would be invisible while the query works.
    Its instances take a ``fetch_comment`` of their own.
    """


class _ExecutionContext(PGExecutionContext_psycopg):
    """Streams only what ``DECLARE ... CURSOR`` accepts; other statements use a plain cursor."""

    def create_server_side_cursor(self) -> Any:
        query = query_context(self)
        if query is None or not query.tags:
            return super().create_server_side_cursor()  # type: ignore[no-untyped-call]
        connection: psycopg.Connection[Any] = self._dbapi_connection.dbapi_connection  # type: ignore[assignment]
        # a unique name: a portal read to its end stays open until its transaction ends
        cursor = _CommentedServerCursor(
            connection, f"c_floe_{id(self):x}_{next(_CURSOR_NUMBERS):x}", row_factory=connection.row_factory
        )
        cursor.fetch_comment = sqlcommenter(query.tags)
        return cursor

    def create_cursor(self) -> Any:
        if self.execution_options.get("stream_results", False) and not self._declarable():
            self._is_server_side = False
            return self.create_default_cursor()
        return super().create_cursor()

    def _declarable(self) -> bool:
        compiled = self.compiled
        if compiled is not None and isinstance(compiled.statement, expression.Selectable):
            return True
        # a default (a Sequence's next value) has no statement of its own: a plain cursor
        statement = getattr(self, "unicode_statement", None)
        return isinstance(statement, str) and returns_cursor(statement)

    def post_exec(self) -> None:
        super().post_exec()  # type: ignore[no-untyped-call]
        cursor = self.cursor
        if not (self._is_server_side and isinstance(cursor, _postgres_copy.CopySource)):
            return
        # SQLAlchemy would FETCH a first row now: that runs the query, and the first read
        # must still be free to take the COPY instead
        self.cursor_fetch_strategy = _FetchStrategy(cursor, self.execution_options)
        _postgres_copy.declared(cursor)
        query = query_context(self)
        if query is not None and query.arrow:
            cursor.copy_unread()


class _FetchStrategy(BufferedRowCursorFetchStrategy):
    """Nothing fetched at execute(); ``fetchmany(n)`` hands over the cursor's own list."""

    def __init__(self, dbapi_cursor: Any, execution_options: Any) -> None:
        super().__init__(dbapi_cursor, execution_options, initial_buffer=collections.deque())

    def fetchmany(self, result: Any, dbapi_cursor: Any, size: int | None = None) -> Any:
        if size is None or self._rowbuffer:
            return super().fetchmany(result, dbapi_cursor, size)
        try:
            rows = dbapi_cursor.fetchmany(size)
        except BaseException as exc:
            self.handle_exception(result, dbapi_cursor, exc)
            raise  # handle_exception raises; this only tells type checkers
        if not rows:
            result._soft_close()
        return rows


class FloePsycopgDialect(PGDialect_psycopg):
    """SQLAlchemy's psycopg dialect, streaming only the statements a server-side cursor can run.

    ``stream_results`` makes the stock dialect ``DECLARE`` a cursor for every statement, which fails
    for ``CREATE``, ``INSERT``, ``SHOW``, ``EXPLAIN``...
    """

    execution_ctx_cls = _ExecutionContext
    supports_statement_cache = True

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        return _postgres_blocking.Connection.connect(*cargs, **cparams)

    def do_ping(self, dbapi_connection: Any) -> bool:
        return _postgres_ping.ping(dbapi_connection) or super().do_ping(dbapi_connection)  # type: ignore[no-untyped-call]

    def _set_connection_characteristics(self, connection: Any, characteristics: Any) -> None:
        _postgres_ping.unbegin(connection.connection.dbapi_connection)  # isolation level, read only
        super()._set_connection_characteristics(connection, characteristics)  # type: ignore[no-untyped-call]

    def do_execute(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        _postgres_ping.statement_sent(cursor.connection)
        if isinstance(cursor, _postgres_copy.CopySource):
            cursor.floe_source = (statement, parameters)
        super().do_execute(cursor, statement, parameters, context)  # type: ignore[no-untyped-call]

    def do_execute_no_params(self, cursor: Any, statement: Any, context: Any = None) -> None:
        _postgres_ping.statement_sent(cursor.connection)
        if isinstance(cursor, _postgres_copy.CopySource):
            cursor.floe_source = (statement, None)
        super().do_execute_no_params(cursor, statement, context)  # type: ignore[no-untyped-call]

    def do_rollback(self, dbapi_connection: Any) -> None:
        self._end_transaction(dbapi_connection, super().do_rollback, run_unread=False)

    def do_commit(self, dbapi_connection: Any) -> None:
        self._end_transaction(dbapi_connection, super().do_commit, run_unread=True)

    @staticmethod
    def _end_transaction(dbapi_connection: Any, end: Callable[[Any], None], *, run_unread: bool) -> None:
        """Before the end: the unread cursor settled and an unfinished COPY stopped (a result
        closed in the middle of it); after it, the server's answer noted for the pool's ping."""
        driver = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
        in_transaction = _postgres_ping.ending(driver)
        _postgres_copy.before_end(driver, run_unread=run_unread)
        end(dbapi_connection)
        if in_transaction:
            _postgres_ping.answered(driver)


registry.register("postgresql.floe_psycopg", __name__, "FloePsycopgDialect")


def returns_cursor(sql: str) -> bool:
    """Whether ``DECLARE CURSOR FOR <sql>`` is valid: one query, not ``SELECT ... INTO``, with no
    data-modifying CTE (``FOR UPDATE`` and a column named ``update`` are fine)."""
    return declarable(sql, "postgres")


def sqlcommenter(tags: Mapping[str, str]) -> str:
    """``/*key='value',...*/`` in the sqlcommenter format: sorted keys, URL-encoded values."""
    pairs = ",".join(f"{quote(k, safe='')}='{quote(v, safe='')}'" for k, v in sorted(tags.items()))
    return f"/*{pairs}*/"


def _option(name: str, value: str | int | float | bool) -> str:
    """One ``-c name=value`` for libpq's ``options`` (spaces and backslashes escaped)."""
    text = ("on" if value else "off") if isinstance(value, bool) else str(value)
    return f"-c {name}=" + text.replace("\\", "\\\\").replace(" ", "\\ ")


class PostgresComputePlugin(ComputePlugin):
    """PostgreSQL with a pre-pinged QueuePool, server-side cursors and server-side cancel."""

    name = "postgresql"
    schemes = ("postgresql", "postgres")  # postgres:// as libpq and Heroku-style URLs write it
    config_class = PostgresConfig
    load_path = "COPY FROM STDIN (FORMAT csv), the CSV written by pyarrow"
    load_batches = _postgres_load.load_batches
    db_system = "postgresql"
    sql_dialect = "postgres"
    default_batch_size = 10_000
    short_batch_ends = True  # a FETCH FORWARD n, a COPY read or a client cursor: n rows unless at the end

    if TYPE_CHECKING:  # the core checked it is a PostgresConfig (config_class); no override to call

        @property
        def config(self) -> PostgresConfig: ...

    def session_settings(self) -> dict[str, str | int | float | bool]:
        """Settings every connection starts with: the supported limits, then ``settings``."""
        limits = self.config.limits
        settings: dict[str, str | int | float | bool] = {}
        if limits.threads is not None:
            settings["max_parallel_workers_per_gather"] = limits.threads
        settings.update(self.config.settings)
        return settings

    def engine_url(self) -> URL:
        return self.config.sqlalchemy_url().set(drivername="postgresql+floe_psycopg")

    def engine_options(self) -> dict[str, Any]:
        query = self.config.url.query
        args: dict[str, Any] = {}
        if "connect_timeout" not in query:
            # unset, libpq waits 130 s for a server that does not answer; it rounds < 2 s up to 2 s
            args["connect_timeout"] = max(2, math.ceil(self.config.timeouts.connect))
        if "application_name" not in query:
            args["application_name"] = "floe-compute"
        # applied by the server when the session starts, before anything (dialect setup included)
        options = [str(query["options"])] if "options" in query else []
        options += [_option(k, v) for k, v in self.session_settings().items()]
        if options:
            args["options"] = " ".join(options)
        return {"connect_args": args}

    def setup_connection(self, dbapi_connection: Any) -> None:
        dbapi_connection.server_cursor_factory = _postgres_copy.CopySource
        dbapi_connection.cursor_factory = _postgres_values.ClientCursor
        if self.config.infinity == "clamp":
            _postgres_values.clamp_infinity(dbapi_connection)

    def end_session(self, connection: Connection, session: SessionPin) -> bool:
        """DISCARD ALL drops the session's temp tables, settings and prepared statements; it
        cannot run in a transaction block, so it runs in autocommit."""
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        _postgres_ping.unbegin(dbapi_connection)  # a session that ran nothing
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute("DISCARD ALL")
        finally:
            dbapi_connection.autocommit = False
        return True

    def begin_query(self, connection: Connection, context: QueryContext) -> None:
        if context.timeout is not None:
            # SET takes no bind parameters (psycopg binds server-side); ms is an int we computed
            ms = max(1, math.ceil(context.timeout * 1000))
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")

    def annotate_statement(self, statement: str, context: QueryContext) -> str:
        """The tags as a trailing sqlcommenter comment: ``pg_stat_activity`` and the server log
        show them next to the statement."""
        if not context.tags:
            return statement
        comment = sqlcommenter(context.tags)
        # psycopg reads %-placeholders in a statement sent with parameters: the comment's
        # URL-encoding must not look like one
        return f"{statement} {comment.replace('%', '%%') if context.sends_parameters else comment}"

    def cancel(self, context: QueryContext) -> bool:
        dbapi_connection = context.dbapi_connection
        # read first: a cancel request stops only a command in progress (between the FETCHes of
        # a server-side cursor the session is idle in its transaction)
        active = dbapi_connection.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE
        cancel_safe = getattr(dbapi_connection, "cancel_safe", None)  # psycopg >= 3.2
        if cancel_safe is not None:
            cancel_safe(timeout=CANCEL_TIMEOUT_S)
        else:
            dbapi_connection.cancel()
        return bool(active)

    def arrow_type(self, column: Any, dbapi_cursor: Any) -> pa.DataType | None:
        return _postgres_copy.arrow_type(column.type_code, column.precision, column.scale)

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        """The COPY stream when nothing was fetched yet (the first read chose Arrow)."""
        if isinstance(dbapi_cursor, _postgres_copy.CopySource) and not dbapi_cursor.copy_unread():
            return None
        return _postgres_copy.copy_reader(dbapi_cursor, batch_size)

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        if not isinstance(exc, psycopg.Error):
            return None
        if (converted := _postgres_values.classify_conversion(exc)) is not None:
            return converted  # a value the driver cannot convert: the connection is fine
        sqlstate = exc.sqlstate
        primary = exc.diag.message_primary if sqlstate else None
        if primary and sqlstate and sqlstate.startswith("22"):
            # data exceptions quote the offending value, which may be a bound parameter
            primary = _QUOTED.sub('"..."', primary)
        # built from the server's fields: str(exc) may echo the statement
        detail = f"{primary} (SQLSTATE {sqlstate})" if primary else " ".join(str(exc).split())
        if isinstance(exc, psycopg.errors.ConnectionTimeout):
            return ConnectionFailedError, f"{detail} (connect timeout {self._connect_timeout()}s)"
        if isinstance(exc, psycopg.errors.QueryCanceled):
            # the server's interrupt handler, not a function raising query_canceled with any words
            if exc.diag.source_function == "ProcessInterrupts" and primary == _STATEMENT_TIMEOUT:
                return QueryTimeoutError, detail
            return QueryCancelledError, f"cancelled on the server: {detail}"
        if sqlstate is None or sqlstate.startswith(("08", "28")) or sqlstate in _CONNECTION_LOST:
            return ConnectionFailedError, detail
        if sqlstate in ("53100", "53200", "53400"):  # disk full, out of memory, temp_file_limit
            return ResourceLimitError, detail
        return QueryError, detail

    def _connect_timeout(self) -> object:
        return self.config.url.query.get("connect_timeout") or max(2, math.ceil(self.config.timeouts.connect))

    def dbt_target(self) -> dict[str, Any]:
        config = self.config
        url = config.url
        env = config.dbt_password_env
        target: dict[str, Any] = {
            "type": "postgres",
            "host": url.host or "localhost",
            "port": url.port or 5432,
            "user": url.username or "",
            # the profile never holds the secret: dbt reads it from the environment
            "password": f"{{{{ env_var('{env}') }}}}"
            if config.password
            else f"{{{{ env_var('{env}', '') }}}}",
            "dbname": url.database or url.username or "",
            "schema": config.dbt_schema,
            "threads": config.pool.size,
            "connect_timeout": int(str(self._connect_timeout())),
        }
        if "sslmode" in url.query:
            target["sslmode"] = str(url.query["sslmode"])
        return target

    def dbt_env(self) -> dict[str, str]:
        password = self.config.password
        return {self.config.dbt_password_env: password.get_secret_value()} if password else {}
