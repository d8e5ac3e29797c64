"""Spark through its Thrift server (HiveServer2 protocol) and PyHive.

The same plugin talks to the Thrift server of a local ``pyspark``, Spark on Kubernetes, EMR, Dataproc
or a standalone cluster. Statements run asynchronously on the server (``runAsync``) and the driver
long-polls their state, so a query always has an operation handle while it runs: cancel sends a Thrift
``CancelOperation`` for it over a second, plugin-wide connection. (A ``cursor.cancel()`` on the query's
own connection while a blocking ``execute()`` waits fails with "operationHandle is unset" and breaks
the connection; Thrift connections are not safe across threads.) Each query also sets
``spark.sql.thriftServer.queryTimeout``, so the server stops it even if this process dies, and
``spark.job.description`` (query id and tags), which the Spark UI shows for its jobs.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator
from pyhive import exc as hive_exc
from pyhive import hive
from pyhive.sqlalchemy_hive import HiveDialect
from sqlalchemy import text
from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL, Connection
from TCLIService import TCLIService, ttypes
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport import TSocket, TTransport

from floe_compute.config import ComputeConfig, parse_url
from floe_compute.errors import ComputeError, ConnectionFailedError, QueryError, QueryTimeoutError
from floe_compute.plugin import ComputePlugin, QueryContext

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SparkComputePlugin", "SparkConfig"]

log = logging.getLogger(__name__)

TIMEOUT_SETTING = "spark.sql.thriftServer.queryTimeout"
DESCRIPTION_SETTING = "spark.job.description"
DEFAULT_SETTINGS: dict[str, str | int | float | bool] = {
    # stream results partition by partition instead of collecting them in the driver first
    "spark.sql.thriftServer.incrementalCollect": True,
}
CANCEL_TIMEOUT_S = 2.0
"""How long a cancel request may block (the watchdog waits for it)."""

_State = ttypes.TOperationState
_UNSET: dict[str, str | None] = {TIMEOUT_SETTING: "0", DESCRIPTION_SETTING: None}
_GENERATED_ID = re.compile(r"^q-[0-9a-f]{16}$")
_RUNNING = {_State.INITIALIZED_STATE, _State.RUNNING_STATE, _State.PENDING_STATE}
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_UNSAFE_VALUE = re.compile(r"[;\r\n\x00]")
_UNSUPPORTED_LIMITS = {
    "memory_limit": "executor and driver memory are cluster settings (spark.executor.memory)",
    "threads": "parallelism is a cluster setting (spark.executor.cores, spark.sql.shuffle.partitions)",
    "temp_directory": "spark.local.dir is a cluster setting",
    "max_temp_directory_size": "Spark has no per-session spill limit",
}
# "org.apache.hive...HiveSQLException: Error running query: [CLASS] org.apache...AnalysisException: ..."
_WRAPPER = re.compile(
    r"^\s*(?:Error running query:|[\w$]+(?:\.[\w$]+)+(?:Exception|Error):"
    r"|\[[A-Z0-9_.]+\](?=\s+[\w$]+(?:\.[\w$]+)+(?:Exception|Error):))\s*"
)
_SQLSTATE_CLASSES = {  # SQL standard class names, so the message says what kind of error it is
    "22": "data exception",
    "23": "integrity constraint violation",
    "0A": "feature not supported",
    "42": "syntax error or access rule violation",
    "53": "insufficient resources",
    "54": "program limit exceeded",
}


class SparkConfig(ComputeConfig):
    """A Spark Thrift Server: ``spark://user@host:10000/database`` (or ``spark+thrift://``)."""

    auth: Literal["NONE", "NOSASL", "LDAP", "CUSTOM", "KERBEROS"] = "NONE"
    """``hive.server2.authentication`` of the server; LDAP and CUSTOM send :attr:`password`."""
    kerberos_service_name: str | None = None
    """The server's Kerberos principal name (``hive``), with ``auth="KERBEROS"``."""
    dbt_schema: str | None = None
    """The schema (database) dbt builds models in; default: the URL's database."""
    dbt_password_env: str = "SPARK_PASSWORD"
    """The environment variable the dbt profile reads the password from (never written to it)."""

    @model_validator(mode="before")
    @classmethod
    def _auth_from_url(cls, data: Any) -> Any:
        """``?auth=LDAP`` and ``?kerberos_service_name=hive`` in the URL are config fields."""
        if not isinstance(data, dict) or data.get("url") is None:
            return data
        try:
            url = parse_url(data["url"])
        except ValueError:
            return data  # the field validator reports it
        moved = {k: str(url.query[k]) for k in ("auth", "kerberos_service_name") if k in url.query}
        if moved:
            data = dict(data)
            for key, value in moved.items():
                data.setdefault(key, value.upper() if key == "auth" else value)
            data["url"] = url.difference_update_query(moved)
        return data

    @model_validator(mode="after")
    def _check(self) -> SparkConfig:
        backend, _, driver = self.url.drivername.partition("+")
        if backend != "spark" or driver not in ("", "thrift"):
            raise ValueError(f"url: {self.url.drivername} is not supported; use spark:// or spark+thrift://")
        if not self.url.host:
            raise ValueError("url: the Thrift server's host is missing (spark://user@host:10000/database)")
        if self.auth == "KERBEROS" and not self.kerberos_service_name:
            raise ValueError("kerberos_service_name: required with auth='KERBEROS' (usually 'hive')")
        if self.password is not None and self.auth not in ("LDAP", "CUSTOM"):
            raise ValueError(f"password: only sent with auth='LDAP' or 'CUSTOM' (auth is {self.auth!r})")
        for name, value in self.settings.items():
            if not _SETTING_NAME.match(name):
                raise ValueError(f"settings: {name!r} is not a Spark setting name")
            if _UNSAFE_VALUE.search(str(value)):
                raise ValueError(f"settings.{name}: a value may not contain ';' or line breaks")
        for limit, why in _UNSUPPORTED_LIMITS.items():
            if getattr(self.limits, limit) is not None:
                raise ValueError(f"limits.{limit}: not supported by Spark ({why})")
        return self

    @property
    def host(self) -> str:
        return self.url.host or ""

    @property
    def port(self) -> int:
        return self.url.port or 10000

    @property
    def database(self) -> str:
        return self.url.database or "default"

    @property
    def username(self) -> str:
        return self.url.username or "floe"


class _Connection(hive.Connection):  # type: ignore[misc]
    """PyHive's connection, with our cursor and the session settings this plugin last sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: dict[str, str | None] = {}
        # thrift's C codec: PyHive decodes every result batch in pure Python
        self._client = TCLIService.Client(TBinaryProtocolAccelerated(self._transport))

    def cursor(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self, *args, **kwargs)


class _Cursor(hive.Cursor):  # type: ignore[misc]
    """Fetches a whole server batch per ``fetchmany`` (PyHive pops rows one at a time)."""

    arraysize: int

    def fetch_columns(self) -> list[list[Any]]:
        """One server batch as columns (empty when the result is exhausted)."""
        request = ttypes.TFetchResultsReq(
            operationHandle=self._operationHandle,
            orientation=ttypes.TFetchOrientation.FETCH_NEXT,
            maxRows=self.arraysize,
        )
        response = self._connection.client.FetchResults(request)
        hive._check_status(response)
        kinds = [column[1] for column in self.description]
        columns = [_values(c, k) for c, k in zip(response.results.columns, kinds, strict=True)]
        if not columns or not columns[0]:
            self._state = self._STATE_FINISHED
            return []
        return columns

    def _fetch_more(self) -> None:
        self._data.extend(zip(*self.fetch_columns(), strict=True))

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        size = size or self.arraysize
        if size > self.arraysize:  # one FetchResults round trip per batch
            self.arraysize = size
        data = self._data
        while len(data) < size and self._state == self._STATE_RUNNING:
            self._fetch_more()
        if len(data) <= size:
            rows = list(data)
            data.clear()
        else:
            rows = [data.popleft() for _ in range(size)]
        self._rownumber += len(rows)
        return rows

    def run(self, statement: str, parameters: Any, state: dict[str, Any]) -> None:
        """Execute asynchronously and wait, publishing the operation handle for cancel."""
        self.execute(statement, parameters, async_=True)
        with _lock(state):
            state["operation"] = self._operationHandle
            cancelled = state.get("cancel_requested", False)
        if cancelled:  # cancel came before the server knew the statement: this thread sends it
            self.cancel()
        while True:
            started = time.monotonic()
            status = self.poll(get_progress_update=False)
            if status.operationState == _State.FINISHED_STATE:
                return
            if status.operationState not in _RUNNING:
                raise hive_exc.OperationalError(status)
            if time.monotonic() - started < 0.01:  # a server without long polling
                time.sleep(0.05)


def _values(column: Any, kind: str) -> list[Any]:
    """A Thrift column's values, None where its null bitmap says so, converted like PyHive does."""
    wrapper = next(v for v in vars(column).values() if v is not None)
    values: list[Any] = wrapper.values
    nulls: bytes = wrapper.nulls
    if nulls.strip(b"\x00"):
        for i, byte in enumerate(nulls):
            if byte:
                for bit in range(8):
                    if byte >> bit & 1 and i * 8 + bit < len(values):
                        values[i * 8 + bit] = None
    convert = hive.TYPES_CONVERTER.get(kind)
    return [convert(v) if v else v for v in values] if convert else values


def _lock(state: dict[str, Any]) -> threading.Lock:
    lock: threading.Lock = state.setdefault("lock", threading.Lock())  # setdefault is atomic
    return lock


class FloeSparkDialect(HiveDialect):  # type: ignore[misc]
    """PyHive's ``hive`` dialect, fixed for Spark, running the plugin's statements asynchronously."""

    name = "spark"
    driver = "floe_thrift"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return hive

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        query: QueryContext | None = context.execution_options.get("floe_query") if context else None
        if query is None or query.cursor is not cursor or not isinstance(cursor, _Cursor):
            cursor.execute(statement, parameters)
        else:
            cursor.run(statement, parameters, query.engine_state)

    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        # Spark's SHOW TABLES has (namespace, tableName, isTemporary); PyHive takes column 0
        return self._names(connection, "SHOW TABLES", schema, views=False)

    def get_view_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        return self._names(connection, "SHOW VIEWS", schema, views=True)

    def _names(self, connection: Any, show: str, schema: str | None, *, views: bool) -> list[str]:
        if schema:
            show += " IN " + self.identifier_preparer.quote_identifier(schema)
        rows = connection.execute(text(show)).fetchall()
        names = [row[1] for row in rows if not row[2]]  # temporary views are session-local
        if views:
            return names
        view_names = set(self._names(connection, "SHOW VIEWS", schema, views=True))
        return [name for name in names if name not in view_names]


registry.register("spark.floe_thrift", __name__, "FloeSparkDialect")


class _Canceller:
    """One extra Thrift session per plugin, opened on first use, that sends ``CancelOperation``."""

    def __init__(self, connect: Any) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._connection: _Connection | None = None

    def open(self) -> None:
        """Open the session ahead of the first cancel, so a deadline is not overshot by a connect."""
        with self._lock:
            if self._connection is None:
                self._connection = self._connect(read_timeout=CANCEL_TIMEOUT_S)

    def cancel(self, handle: Any) -> None:
        with self._lock:
            for attempt in (1, 2):  # the server may have restarted since the session was opened
                try:
                    if self._connection is None:
                        self._connection = self._connect(read_timeout=CANCEL_TIMEOUT_S)
                    request = ttypes.TCancelOperationReq(operationHandle=handle)
                    self._connection.client.CancelOperation(request)  # an ended query: error status
                    return
                except Exception:
                    self._close()
                    if attempt == 2:
                        raise

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken
                connection._transport.close()

    def close(self) -> None:
        with self._lock:
            self._close()


class SparkComputePlugin(ComputePlugin):
    """Spark SQL through a Thrift server, with server-side timeouts and cancel by operation handle."""

    name = "spark"
    schemes = ("spark",)
    config_class = SparkConfig
    db_system = "spark_sql"
    default_batch_size = 10_000

    def __init__(self, config: ComputeConfig) -> None:
        super().__init__(config)
        self._canceller = _Canceller(self._open)

    @property
    def config(self) -> SparkConfig:
        assert isinstance(self._config, SparkConfig)
        return self._config

    def session_settings(self) -> dict[str, str]:
        """What every new session gets with ``SET``: our defaults, then ``settings``."""
        merged = {**DEFAULT_SETTINGS, **self.config.settings}
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in merged.items()}

    # -- connections ------------------------------------------------------------------------

    def _open(self, read_timeout: float | None = None) -> _Connection:
        """A PyHive connection whose connect (and session setup) gives up after ``timeouts.connect``."""
        config = self.config
        socket = TSocket.TSocket(config.host, config.port)
        socket.setTimeout(config.timeouts.connect * 1000)
        transport: Any
        if config.auth == "NOSASL":
            transport = TTransport.TBufferedTransport(socket)
        else:
            import thrift_sasl

            mechanism = "GSSAPI" if config.auth == "KERBEROS" else "PLAIN"
            password = config.password.get_secret_value() if config.password else "x"  # NONE: any

            def sasl() -> Any:
                return hive.get_installed_sasl(
                    host=config.host,
                    sasl_auth=mechanism,
                    service=config.kerberos_service_name,
                    username=config.username,
                    password=password,
                )

            transport = thrift_sasl.TSaslClientTransport(sasl, mechanism, socket)
        connection = _Connection(
            thrift_transport=transport, username=config.username, database=config.database
        )
        socket.setTimeout(None if read_timeout is None else read_timeout * 1000)
        return connection

    def engine_url(self) -> URL:
        return self.config.url.set(drivername="spark+floe_thrift", query={})

    def engine_options(self) -> dict[str, Any]:
        return {"creator": self._open}

    def setup_connection(self, dbapi_connection: Any) -> None:
        try:
            self._canceller.open()
        except Exception:  # cancel opens it again when needed; the query connection works
            log.debug("cannot open the cancel session yet", exc_info=True)
        cursor = dbapi_connection.cursor()
        try:
            for key, value in self.session_settings().items():
                cursor.execute(f"SET {key}={value}")
        finally:
            cursor.close()

    def on_dispose(self) -> None:
        self._canceller.close()

    # -- queries ----------------------------------------------------------------------------

    def begin_query(self, connection: Connection, context: QueryContext) -> None:
        dbapi = context.dbapi_connection
        if not isinstance(dbapi, _Connection):
            return
        timeout = "0" if context.timeout is None else str(math.ceil(context.timeout))
        description = None
        if context.tags or not _GENERATED_ID.match(context.query_id):
            # the Spark UI lists the query's jobs under its id and tags
            tags = "".join(f" {k}={v}" for k, v in context.tags.items())
            description = _UNSAFE_VALUE.sub(" ", f"floe {context.query_id}{tags}")
        wanted = {TIMEOUT_SETTING: timeout, DESCRIPTION_SETTING: description}
        sent = dbapi.sent
        changed = {k: v for k, v in wanted.items() if sent.get(k, _UNSET[k]) != v}
        if not changed:
            return
        cursor = dbapi.cursor()
        try:
            for key, value in changed.items():
                cursor.execute(f"SET {key}={value}" if value is not None else f"RESET {key}")
                dbapi.sent[key] = value
        finally:
            cursor.close()

    def cancel(self, context: QueryContext) -> None:
        state = context.engine_state
        with _lock(state):
            handle = state.get("operation")
            if handle is None:  # not on the server yet: the query's thread cancels it on arrival
                state["cancel_requested"] = True
                return
        self._canceller.cancel(handle)

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        """Arrow batches typed by the schema the server reports, built from the row batches."""
        import pyarrow as pa

        if not isinstance(dbapi_cursor, _Cursor) or dbapi_cursor._operationHandle is None:
            return None
        request = ttypes.TGetResultSetMetadataReq(dbapi_cursor._operationHandle)
        response = dbapi_cursor._connection.client.GetResultSetMetadata(request)
        hive._check_status(response)
        schema = _arrow_schema(response.schema.columns)

        dbapi_cursor.arraysize = batch_size

        def batches() -> Iterator[pa.RecordBatch]:
            while columns := dbapi_cursor.fetch_columns():
                yield _to_batch(columns, schema)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        if isinstance(exc, TTransport.TTransportException | EOFError | ConnectionError):
            return ConnectionFailedError, str(exc) or type(exc).__name__
        if not isinstance(exc, hive_exc.Error):
            return None
        response = exc.args[0] if exc.args else None
        status = getattr(response, "status", None)
        message = getattr(response, "errorMessage", None) or getattr(status, "errorMessage", None)
        sqlstate = getattr(response, "sqlState", None) or getattr(status, "sqlState", None)
        if not message:
            state = getattr(response, "operationState", None)
            name = _State._VALUES_TO_NAMES.get(state, "unknown") if state is not None else None
            message = f"the operation ended in state {name}" if name else str(exc).splitlines()[0]
        detail = _first_line(message)
        if sqlstate and sqlstate[:2] in _SQLSTATE_CLASSES:
            detail += f" ({_SQLSTATE_CLASSES[sqlstate[:2]]})"
        if "TIMEDOUT" in message or getattr(response, "operationState", None) == _State.TIMEDOUT_STATE:
            return QueryTimeoutError, detail
        if isinstance(exc, hive_exc.OperationalError) and status is not None and not message.strip():
            return ConnectionFailedError, detail
        return QueryError, detail

    # -- dbt --------------------------------------------------------------------------------

    def dbt_target(self) -> dict[str, Any]:
        config = self.config
        target: dict[str, Any] = {
            "type": "spark",
            "method": "thrift",
            "host": config.host,
            "port": config.port,
            "user": config.username,
            "schema": config.dbt_schema or config.database,
            "threads": config.pool.size,
            "connect_timeout": max(1, math.ceil(config.timeouts.connect)),
            "connect_retries": 0,
        }
        if config.auth != "NONE":
            target["auth"] = config.auth
        if config.auth == "KERBEROS":
            target["kerberos_service_name"] = config.kerberos_service_name
        if config.password is not None:
            # the profile never holds the secret: dbt reads it from the environment
            target["password"] = f"{{{{ env_var('{config.dbt_password_env}') }}}}"
        if config.settings:
            target["server_side_parameters"] = {k: str(v) for k, v in config.settings.items()}
        return target

    def dbt_env(self) -> dict[str, str]:
        password = self.config.password
        return {self.config.dbt_password_env: password.get_secret_value()} if password else {}


def _first_line(message: str) -> str:
    """Spark's message without the wrapper text, the exception class and the JVM stack trace."""
    text = message.strip()
    while match := _WRAPPER.match(text):
        text = text[match.end() :]
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("at ", "== ")):
            return line.strip()
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def _arrow_schema(columns: list[Any]) -> pa.Schema:
    """The Arrow schema of the server's result metadata. Arrays, maps, structs and intervals come
    as text (Spark sends them as JSON-like strings), so they are strings here too."""
    import pyarrow as pa

    t = ttypes.TTypeId
    simple = {
        t.BOOLEAN_TYPE: pa.bool_(),
        t.TINYINT_TYPE: pa.int8(),
        t.SMALLINT_TYPE: pa.int16(),
        t.INT_TYPE: pa.int32(),
        t.BIGINT_TYPE: pa.int64(),
        t.FLOAT_TYPE: pa.float32(),
        t.DOUBLE_TYPE: pa.float64(),
        t.BINARY_TYPE: pa.binary(),
        t.TIMESTAMP_TYPE: pa.timestamp("us"),
        t.DATE_TYPE: pa.date32(),
        t.NULL_TYPE: pa.null(),
    }
    fields = []
    for column in columns:
        entry = column.typeDesc.types[0].primitiveEntry
        kind = entry.type if entry is not None else t.STRING_TYPE
        if kind == t.DECIMAL_TYPE:
            qualifiers = entry.typeQualifiers.qualifiers
            precision, scale = qualifiers["precision"].i32Value, qualifiers["scale"].i32Value
            type_ = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        else:
            type_ = simple.get(kind, pa.string())
        fields.append(pa.field(column.columnName, type_))
    return pa.schema(fields)


def _to_batch(columns: list[list[Any]], schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    arrays = []
    for values, field in zip(columns, schema, strict=True):
        if pa.types.is_date32(field.type):  # PyHive passes dates through as 'YYYY-MM-DD'
            arrays.append(pa.array(values, pa.string()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
