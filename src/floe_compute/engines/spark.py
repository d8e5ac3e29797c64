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
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import model_validator
from pyhive import exc as hive_exc
from pyhive import hive
from sqlalchemy.engine import URL, Connection
from TCLIService import ttypes
from thrift.transport import TSocket, TTransport

from floe_compute.config import ComputeConfig, url_query_fields
from floe_compute.context import QueryContext
from floe_compute.engines import _spark_load
from floe_compute.engines._hiveserver2 import server_message, sqlstate_class
from floe_compute.engines._spark_query import SparkQuery
from floe_compute.engines._spark_thrift import (
    FETCH_START_S,
    LOST,
    Canceller,
    SparkConnection,
    SparkCursor,
    arrow_schema,
    to_batch,
)
from floe_compute.errors import ComputeError, ConnectionFailedError, QueryError, QueryTimeoutError
from floe_compute.plugin import ComputePlugin

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

_State = ttypes.TOperationState
_UNSET: dict[str, str | None] = {TIMEOUT_SETTING: "0", DESCRIPTION_SETTING: None}
_GENERATED_ID = re.compile(r"^q-[0-9a-f]{16}$")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_UNSAFE_VALUE = re.compile(r"[;\r\n\x00]")


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

    unsupported_limits: ClassVar[Mapping[str, str]] = {
        "memory_limit": "executor and driver memory are cluster settings (spark.executor.memory)",
        "threads": "parallelism is a cluster setting (spark.executor.cores, spark.sql.shuffle.partitions)",
        "temp_directory": "spark.local.dir is a cluster setting",
        "max_temp_directory_size": "Spark has no per-session spill limit",
    }

    @model_validator(mode="before")
    @classmethod
    def _auth_from_url(cls, data: Any) -> Any:
        """``?auth=LDAP`` and ``?kerberos_service_name=hive`` in the URL are config fields."""
        found = url_query_fields(data, ("auth", "kerberos_service_name"))
        if found is None:
            return data
        data, moved = found
        for key, value in moved.items():
            data.setdefault(key, value.upper() if key == "auth" else value)
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


class SparkComputePlugin(ComputePlugin):
    """Spark SQL through a Thrift server, with server-side timeouts and cancel by operation handle."""

    name = "spark"
    schemes = ("spark",)
    config_class = SparkConfig
    db_system = "spark_sql"
    sql_dialect = "spark"
    default_batch_size = 10_000
    has_transactions = False  # an INSERT is written when it runs; commit() does nothing
    load_path = "batched multi-row INSERT ... VALUES statements (the slow path; not atomic)"
    load_batches = _spark_load.load_batches

    def __init__(self, config: ComputeConfig) -> None:
        super().__init__(config)
        self._canceller = Canceller(self._open)

    if TYPE_CHECKING:  # the core checked it is a SparkConfig (config_class); no override to call

        @property
        def config(self) -> SparkConfig: ...

    def session_settings(self) -> dict[str, str]:
        """What every new session gets with ``SET``: our defaults, then ``settings``."""
        merged = {**DEFAULT_SETTINGS, **self.config.settings}
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in merged.items()}

    # -- connections ------------------------------------------------------------------------

    def _open(self, read_timeout: float | None = None) -> SparkConnection:
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
        connection = SparkConnection(
            thrift_transport=transport, username=config.username, database=config.database
        )
        connection.canceller = self._canceller
        socket.setTimeout(None if read_timeout is None else read_timeout * 1000)
        return connection

    def engine_url(self) -> URL:
        return self.config.url.set(drivername="spark+floe_thrift", query={})

    def engine_options(self) -> dict[str, Any]:
        driver_log = logging.getLogger("pyhive.hive")
        if driver_log.level == logging.NOTSET:  # it logs each statement with its bound values at INFO
            driver_log.setLevel(logging.WARNING)
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
        if not isinstance(dbapi, SparkConnection):
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

    def cancel(self, context: QueryContext) -> bool:
        state = context.state(SparkQuery)
        with state.lock:
            handle = state.operation
            if handle is None:  # not on the server yet: the query's thread cancels it on arrival
                state.cancel_requested = True
                return False
            executed, fetch_started = state.executed, state.fetch_started
            if executed and fetch_started and time.monotonic() - fetch_started < FETCH_START_S:
                return False  # its job may not be submitted yet; the watchdog calls again shortly
            if not executed:
                state.settle = True
        self._canceller.cancel(handle, executed=executed)
        return True

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        """Arrow batches typed by the schema the server reports, built from the row batches."""
        import pyarrow as pa

        if not isinstance(dbapi_cursor, SparkCursor) or dbapi_cursor._operationHandle is None:
            return None
        request = ttypes.TGetResultSetMetadataReq(dbapi_cursor._operationHandle)
        response = dbapi_cursor._connection.client.GetResultSetMetadata(request)
        hive._check_status(response)
        schema = arrow_schema(response.schema.columns)

        dbapi_cursor.arraysize = batch_size

        def batches() -> Iterator[pa.RecordBatch]:
            while columns := dbapi_cursor.fetch_columns():
                yield to_batch(columns, schema)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        if isinstance(exc, TTransport.TTransportException | EOFError | ConnectionError):
            return ConnectionFailedError, str(exc) or type(exc).__name__
        if not isinstance(exc, hive_exc.Error):
            return None
        if isinstance(exc.__cause__, LOST):
            return ConnectionFailedError, str(exc)
        response = exc.args[0] if exc.args else None
        status = getattr(response, "status", None)
        message = getattr(response, "errorMessage", None) or getattr(status, "errorMessage", None)
        sqlstate = getattr(response, "sqlState", None) or getattr(status, "sqlState", None)
        if not message:
            state = getattr(response, "operationState", None)
            name = _State._VALUES_TO_NAMES.get(state, "unknown") if state is not None else None
            message = f"the operation ended in state {name}" if name else str(exc).splitlines()[0]
        detail = server_message(message) or "unknown error"
        if kind := sqlstate_class(sqlstate):
            detail += f" ({kind})"
        # the operation's state says whether the server's own timeout stopped it: never the
        # message, which may quote an identifier or a literal of the statement
        if getattr(response, "operationState", None) == _State.TIMEDOUT_STATE:
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
