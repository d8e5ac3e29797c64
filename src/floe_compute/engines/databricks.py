"""Databricks SQL warehouses and clusters through ``databricks-sql-connector`` and its SQLAlchemy dialect.

The connector speaks HiveServer2 Thrift over HTTPS. Statements run asynchronously on the server and the
connector polls their state, so a blocked ``execute()`` always has a command id: cancel is the
connector's own ``cursor.cancel()`` from another thread. Each query sets the session's statement
timeout (``STATEMENT_TIMEOUT`` on Databricks), so the warehouse stops it even if this process dies;
tags travel as the connector's per-statement ``query_tags``. The token is never put into a URL the
engine keeps: it reaches the connector as a keyword argument, read from a ``SecretStr`` at connect.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from databricks import sql as dbsql
from pydantic import ConfigDict, Field, SecretStr, model_validator
from sqlalchemy.engine import URL, Connection

from floe_compute.config import ComputeConfig, url_query_fields
from floe_compute.context import QueryContext
from floe_compute.engines import _databricks_retry, _spark_load
from floe_compute.engines._databricks_dialect import TIMED_OUT, DatabricksQuery, FloeDatabricksDialect
from floe_compute.engines._databricks_oauth import ClientCredentials
from floe_compute.engines._hiveserver2 import server_message, sqlstate_class
from floe_compute.errors import ComputeError, ConnectionFailedError, QueryError, QueryTimeoutError
from floe_compute.plugin import ComputePlugin

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DatabricksComputePlugin", "DatabricksConfig", "FloeDatabricksDialect"]

_URL_FIELDS = ("http_path", "catalog", "schema")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_UNSAFE_VALUE = re.compile(r"[;\r\n\x00]")


class DatabricksConfig(ComputeConfig):
    """``databricks://token:TOKEN@HOST?http_path=/sql/1.0/warehouses/ID&catalog=main&schema=default``."""

    http_path: str | None = None
    """The warehouse's or cluster's HTTP path (``/sql/1.0/warehouses/<id>``)."""
    catalog: str | None = None
    """The session's initial catalog (``catalog=`` in the URL)."""
    db_schema: str | None = Field(default=None, alias="schema")
    """The initial schema (``schema=`` in the URL and in overrides)."""
    access_token: SecretStr | None = None
    """A personal access token; the URL's password (``token:<TOKEN>@``) lands here too."""
    client_id: str | None = None
    """OAuth machine-to-machine: the service principal's application id (with :attr:`client_secret`)."""
    client_secret: SecretStr | None = None
    """OAuth machine-to-machine: the service principal's secret (never shown or logged)."""
    session_configuration: dict[str, str] = Field(default_factory=dict)
    """Session settings sent when a session opens (``STATEMENT_TIMEOUT``, ``ANSI_MODE``, ...)."""
    timeout_setting: str = "STATEMENT_TIMEOUT"
    """The session setting a query's deadline is sent as (in whole seconds; 0 means none)."""
    enable_telemetry: bool = False
    """The connector's own usage telemetry to Databricks; off unless turned on."""
    # endpoint options, for private links, proxies and local HiveServer2-over-HTTP endpoints
    connection_uri: str | None = None
    """The full Thrift endpoint (``https://host:port/path``), instead of host + ``http_path``."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The endpoint's port, when it is not 443."""
    tls_trusted_ca_file: str | None = None
    """A CA bundle to trust for the endpoint's TLS certificate (a private or local endpoint)."""
    tls_no_verify: bool = False
    """Skip TLS certificate checks (local endpoints only)."""
    socket_timeout: float | None = Field(default=None, gt=0)
    """Seconds the connector waits on one HTTP request; default: the connector's own."""
    dbt_token_env: str = "DATABRICKS_TOKEN"
    """The environment variable the dbt profile reads the token from (never written to it)."""

    model_config = ConfigDict(populate_by_name=True)
    unsupported_limits = dict.fromkeys(
        ("memory_limit", "threads", "temp_directory", "max_temp_directory_size"), "a warehouse setting"
    )

    @model_validator(mode="before")
    @classmethod
    def _fields_from_url(cls, data: Any) -> Any:
        """``?http_path=``, ``?catalog=`` and ``?schema=`` in the URL are config fields."""
        found = url_query_fields(data, _URL_FIELDS)
        if found is None:
            return data
        data, moved = found
        for key, value in moved.items():
            if not (key == "schema" and "db_schema" in data):
                data.setdefault(key, value)
        return data

    @model_validator(mode="after")
    def _check(self) -> DatabricksConfig:
        backend, _, driver = self.url.drivername.partition("+")
        if backend != "databricks" or driver not in ("", "connector"):
            raise ValueError(f"url: {self.url.drivername} is not supported; use databricks://")
        if not self.url.host and not self.connection_uri:
            raise ValueError(
                "url: the workspace host is missing (databricks://token:TOKEN@HOST?http_path=...)"
            )
        if not self.http_path and not self.connection_uri:
            raise ValueError("http_path: required (the warehouse's /sql/1.0/warehouses/<id>)")
        if self.access_token is not None and self.password is not None:
            raise ValueError("access_token: given twice (as access_token and as the URL's password)")
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError("client_id and client_secret: OAuth machine-to-machine needs both")
        if self.client_id is not None and self.token is not None:
            raise ValueError("client_id: use either an access token or OAuth client credentials, not both")
        if self.settings:
            raise ValueError("settings: use session_configuration (sent when each session opens)")
        for name, value in self.session_configuration.items():
            if not _SETTING_NAME.match(name):
                raise ValueError(f"session_configuration: {name!r} is not a setting name")
            if _UNSAFE_VALUE.search(value):
                raise ValueError(f"session_configuration.{name}: a value may not contain ';' or line breaks")
        if not _SETTING_NAME.match(self.timeout_setting):
            raise ValueError(f"timeout_setting: {self.timeout_setting!r} is not a setting name")
        return self

    @property
    def token(self) -> SecretStr | None:
        return self.access_token or self.password

    @property
    def host(self) -> str:
        return self.url.host or ""

    @property
    def secrets(self) -> tuple[str, ...]:
        found = (self.token, self.client_secret)
        return tuple(s.get_secret_value() for s in found if s is not None)


# the server's message ends with its SQLSTATE ("... SQLSTATE: 42703"), or with it and a position
_SQLSTATE = re.compile(r"SQLSTATE: ([0-9A-Z]{5})(?:;[^;]*)?$")


class DatabricksComputePlugin(ComputePlugin):
    """Databricks SQL: per-query statement timeouts, cancel by command id, the connector's Arrow."""

    name = "databricks"
    schemes = ("databricks",)
    config_class = DatabricksConfig
    db_system = "databricks"
    default_batch_size = 10_000
    has_transactions = False  # an INSERT is written when it runs; commit() does nothing
    load_path = "batched multi-row INSERT ... VALUES statements (the slow path; not atomic)"
    load_batches = _spark_load.load_batches

    if TYPE_CHECKING:  # the core checked it is a DatabricksConfig (config_class); no override to call

        @property
        def config(self) -> DatabricksConfig: ...

    def engine_url(self) -> URL:
        config = self.config
        query = {k: v for k, v in (("http_path", config.http_path), ("catalog", config.catalog),
                                   ("schema", config.db_schema)) if v}  # fmt: skip
        return URL.create("databricks+floe_connector", host=config.host or "localhost", query=query)

    def connect_args(self) -> dict[str, Any]:
        """The connector's keyword arguments (secrets included: only ever passed, never stored)."""
        config = self.config
        args: dict[str, Any] = {
            "access_token": config.token.get_secret_value() if config.token else None,
            "enable_telemetry": config.enable_telemetry,
            "user_agent_entry": "floe-compute",
            # a failing request is retried for this long (the connector's default is 900 s, which
            # keeps a connect to a down endpoint hanging for 15 minutes)
            "_retry_stop_after_attempts_duration": config.timeouts.connect,
        }
        if config.session_configuration:
            args["session_configuration"] = dict(config.session_configuration)
        if config.client_id is not None and config.client_secret is not None:
            args["credentials_provider"] = ClientCredentials(
                config.host, config.client_id, config.client_secret, config.timeouts.connect
            )
        args.update(self._endpoint_args())
        return args

    def _endpoint_args(self) -> dict[str, Any]:
        config = self.config
        optional = {
            "_connection_uri": config.connection_uri,
            "_port": config.port,
            "_tls_trusted_ca_file": config.tls_trusted_ca_file,
            "_tls_no_verify": config.tls_no_verify or None,
            "_socket_timeout": config.socket_timeout,
        }
        return {k: v for k, v in optional.items() if v is not None}

    def engine_options(self) -> dict[str, Any]:
        connector_log = logging.getLogger("databricks.sql")
        if connector_log.level == logging.NOTSET:  # its DEBUG lines quote statements with bound values
            connector_log.setLevel(logging.INFO)
        # whole Thrift requests with their parameters; the connector sets it to DEBUG on import
        logging.getLogger("databricks.sql.unsafe").setLevel(logging.WARNING)
        return {"connect_args": self.connect_args()}

    def setup_connection(self, dbapi_connection: Any) -> None:
        _databricks_retry.no_resend_after_a_lost_answer(dbapi_connection)

    def begin_query(self, connection: Connection, context: QueryContext) -> None:
        """The deadline as the session's statement timeout, sent only when it changes."""
        dbapi = context.dbapi_connection
        seconds = "0" if context.timeout is None else str(max(1, math.ceil(context.timeout)))
        sent: dict[str, str] = getattr(dbapi, "_floe_sent", {})
        setting = self.config.timeout_setting
        if sent.get(setting, "0") == seconds:
            return
        cursor = dbapi.cursor()
        try:
            cursor.execute(f"SET {setting} = {seconds}")
        finally:
            cursor.close()
        sent[setting] = seconds
        dbapi._floe_sent = sent

    def cancel(self, context: QueryContext) -> bool:
        """``cursor.cancel()`` (a Thrift ``CancelOperation`` for the statement's command id), which
        the connector allows from another thread while ``execute()`` waits for the statement."""
        cursor = context.state(DatabricksQuery).cursor
        if cursor is None or cursor.active_command_id is None:
            return False  # not on the server yet: the core stops it before it is sent, or cancels again
        cursor.cancel()
        return True

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        """The connector's own Arrow tables (``fetchmany_arrow``), as one batch stream."""
        import pyarrow as pa

        dbapi_cursor = getattr(dbapi_cursor, "cursor", dbapi_cursor)
        if not isinstance(dbapi_cursor, dbsql.client.Cursor) or dbapi_cursor.active_result_set is None:
            return None
        first = dbapi_cursor.fetchmany_arrow(batch_size)

        def batches() -> Iterator[pa.RecordBatch]:
            table = first
            while table.num_rows:
                yield from table.to_batches()
                table = dbapi_cursor.fetchmany_arrow(batch_size)

        return pa.RecordBatchReader.from_batches(first.schema, batches())

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        from databricks.sql import exc as db_exc

        if not isinstance(exc, db_exc.Error):
            return None
        text = getattr(exc, "message", None)  # str() fails when the server sent no message
        message = server_message(text if isinstance(text, str) else "") or type(exc).__name__
        sqlstate = _SQLSTATE.search(message)
        if sqlstate and (kind := sqlstate_class(sqlstate.group(1))):
            message += f" ({kind})"
        for secret in self.config.secrets:
            message = message.replace(secret, "***")
        if isinstance(exc, db_exc.RequestError | db_exc.SessionAlreadyClosedError | db_exc.InterfaceError):
            return ConnectionFailedError, message
        # the statement's state says whether the server's own timeout stopped it: never the
        # message, which may quote an identifier or a literal of the statement
        if getattr(exc, TIMED_OUT, False):
            return QueryTimeoutError, message
        return QueryError, message

    def never_ran(self, exc: Exception) -> str | None:
        return _databricks_retry.never_ran(exc)

    # -- dbt --------------------------------------------------------------------------------

    def _session_namespace(self) -> tuple[str, str]:
        """The catalog and schema statements run in: the configured ones, else the session's
        current ones, which the dialect reads at the first connect."""
        config = self.config
        if config.catalog and config.db_schema:
            return config.catalog, config.db_schema
        dialect: Any = self.engine.dialect
        if dialect.catalog is None or dialect.schema is None:
            try:
                self.engine.connect().close()
            except Exception as exc:
                doing = "reading the session's catalog (catalog= and schema= in the URL skip this): "
                doing += "cannot connect"
                raise self.connection_error(exc, doing) from exc
        return config.catalog or dialect.catalog, config.db_schema or dialect.schema

    def dbt_target(self) -> dict[str, Any]:
        config = self.config
        # dbt-databricks would pick hive_metastore, not the session's catalog the plugin uses
        catalog, schema = self._session_namespace()
        target: dict[str, Any] = {
            "type": "databricks",
            "host": config.host,
            "http_path": config.http_path or "",
            "catalog": catalog,
            "schema": schema,
            "threads": config.pool.size,
            "connect_retries": 0,
            "connect_timeout": max(1, math.ceil(config.timeouts.connect)),
        }
        if config.token is not None:
            # the profile never holds the secret: dbt reads it from the environment
            target["token"] = f"{{{{ env_var('{config.dbt_token_env}') }}}}"
        if config.client_id is not None:
            target["auth_type"] = "oauth"
            target["client_id"] = config.client_id
            target["client_secret"] = f"{{{{ env_var('{config.dbt_token_env}_CLIENT_SECRET') }}}}"
        if config.session_configuration:
            target["session_properties"] = dict(config.session_configuration)
        parameters = self._endpoint_args()  # dbt-databricks passes them on to the connector
        if not config.enable_telemetry:
            parameters["enable_telemetry"] = False
        target["connection_parameters"] = parameters
        return target

    def dbt_env(self) -> dict[str, str]:
        config = self.config
        env: dict[str, str] = {}
        if config.token is not None:
            env[config.dbt_token_env] = config.token.get_secret_value()
        if config.client_secret is not None:
            env[f"{config.dbt_token_env}_CLIENT_SECRET"] = config.client_secret.get_secret_value()
        return env
