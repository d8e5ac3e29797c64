"""Snowflake through the official connector and ``snowflake-sqlalchemy``.

A query's timeout and tags travel with the query itself, as the connector's statement parameters
(``STATEMENT_TIMEOUT_IN_SECONDS``, ``QUERY_TAG``) in its ``query-request``: no ``ALTER SESSION``
round trip, and nothing that outlives the query on a pooled session. The request id of each query
is chosen here, so that cancelling (the watchdog at the deadline, or ``cancel_query()``) can send
Snowflake's ``abort-request`` for exactly that query from another thread while ``execute()`` is
still blocked in the driver. Arrow batches come from the connector's own ``fetch_arrow_batches()``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from pydantic import ConfigDict, Field, SecretStr, model_validator
from snowflake.connector import errors as sf_errors
from sqlalchemy.engine import URL

from floe_compute.config import ComputeConfig
from floe_compute.context import QueryContext
from floe_compute.engines import _snowflake_arrow, _snowflake_load, _snowflake_retry
from floe_compute.engines._snowflake_dialect import SnowflakeQuery, Untrusted, untrusted
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
)
from floe_compute.plugin import ComputePlugin

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SnowflakeComputePlugin", "SnowflakeConfig"]

ABORT_TIMEOUT_S = 2  # how long the watchdog waits for Snowflake to acknowledge an abort-request
ABORT_ATTEMPTS = 3  # abort-requests a query gets before its session is given up
_ENDPOINT_KEYS = ("host", "port", "protocol")
# the names of a few of Snowflake's codes whose message does not say what they are
_KNOWN = {
    1003: "(syntax error)",
    2003: "(object does not exist or not authorized)",
    390100: "(incorrect username or password)",
}
_FORMATTED = re.compile(r"^\d{6}(?: \([^)]*\))?: (?:[0-9a-f-]{36}: )?")
# login, session and network failures: the endpoint is worth naming
_CONNECTION = {390100, 390101, 390102, 390144, 390104, 390111, 390114, 250001, 250003, 251011, 251012}


class SnowflakeConfig(ComputeConfig):
    """A Snowflake account: ``snowflake://USER[:PASSWORD]@ACCOUNT/DATABASE/SCHEMA?warehouse=WH&role=R``.

    Every part of the URL can also be given (or overridden) as a field; ``host``, ``port`` and
    ``protocol`` point the connector at another endpoint (private link, a proxy, an emulator).
    """

    model_config = ConfigDict(populate_by_name=True)

    account: str | None = None
    """Default: the URL's host part."""
    user: str | None = None
    """The login name. Default: the URL's user."""
    database: str | None = None
    """The session's database. Default: the URL's first path part."""
    schema_: str | None = Field(default=None, alias="schema")
    """The session's schema (key ``schema``). Default: the URL's second path part."""
    warehouse: str | None = None
    """The virtual warehouse that runs the queries."""
    role: str | None = None
    """The role the session uses."""
    host: str | None = None
    """Another endpoint host (private link, a proxy, an emulator) instead of the account's own."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The endpoint's port, with ``host``."""
    protocol: Literal["https", "http"] | None = None
    """``http`` only for a local emulator; default ``https``."""
    private_key_path: Path | None = None
    """A PEM private key for key-pair auth (instead of a password); read once per engine."""
    private_key_passphrase: SecretStr | None = None
    """The passphrase of an encrypted ``private_key_path`` (never logged)."""
    dbt_password_env: str = "SNOWFLAKE_PASSWORD"
    """The variable the dbt profile reads the password from (never written to the profile)."""
    dbt_private_key_passphrase_env: str = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
    """The variable the dbt profile reads the key's passphrase from (never written to it)."""

    @model_validator(mode="after")
    def _check(self) -> SnowflakeConfig:
        url = self.url
        if url.drivername not in ("snowflake", "snowflake+floe"):
            raise ValueError(f"url: {url.drivername}:// is not a Snowflake URL; use snowflake://")
        for key in _ENDPOINT_KEYS:
            if key in url.query:
                raise ValueError(f"url: give {key} as the {key}= field, not in the URL's query string")
        if not self.account_name:
            raise ValueError("account: missing; snowflake://USER@ACCOUNT/DATABASE/SCHEMA, or account=")
        if not self.user_name:
            raise ValueError("user: missing; snowflake://USER@ACCOUNT/DATABASE/SCHEMA, or user=")
        if len((url.database or "").split("/")) > 2:
            raise ValueError(f"url: {url.database!r} is not DATABASE or DATABASE/SCHEMA")
        if self.private_key_path is not None and self.password is not None:
            raise ValueError("give either a password or private_key_path (key-pair auth), not both")
        if self.private_key_path is None and self.password is None:
            raise ValueError(
                "password: missing; give a password (in the URL or password=) or private_key_path"
            )
        if self.private_key_passphrase is not None and self.private_key_path is None:
            raise ValueError("private_key_passphrase: set without private_key_path")
        return self

    def _part(self, index: int) -> str | None:
        parts = (self.url.database or "").split("/")
        return parts[index] or None if index < len(parts) else None

    @property
    def account_name(self) -> str | None:
        return self.account or self.url.host

    @property
    def user_name(self) -> str | None:
        return self.user or self.url.username

    @property
    def database_name(self) -> str | None:
        return self.database or self._part(0)

    @property
    def schema_name(self) -> str | None:
        return self.schema_ or self._part(1)

    @property
    def warehouse_name(self) -> str | None:
        return self.warehouse or _query_value(self.url, "warehouse")

    @property
    def role_name(self) -> str | None:
        return self.role or _query_value(self.url, "role")

    @property
    def secrets(self) -> tuple[str, ...]:
        phrase = self.private_key_passphrase
        return super().secrets + ((phrase.get_secret_value(),) if phrase else ())


def _query_value(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    return (value if isinstance(value, str) else value[-1]) if value else None


class SnowflakeComputePlugin(ComputePlugin):
    """Snowflake with per-statement timeouts and tags, abort-request cancel and native Arrow."""

    name = "snowflake"
    schemes = ("snowflake",)
    config_class = SnowflakeConfig
    db_system = "snowflake"
    load_path = "Parquet files PUT to a temporary stage, then one COPY INTO naming them"
    load_batches = _snowflake_load.load_batches
    sql_dialect = "snowflake"
    default_batch_size = 10_000
    # a session is a token over HTTPS, not a socket that dies: no ping (a warehouse round trip) per
    # checkout; sessions are recycled before Snowflake's 4-hour idle expiry instead
    default_pre_ping = False
    default_recycle_s = 3600.0

    if TYPE_CHECKING:  # the core checked it is a SnowflakeConfig (config_class); no override to call

        @property
        def config(self) -> SnowflakeConfig: ...

    def engine_url(self) -> URL:
        config = self.config
        query = {k: v for k, v in config.url.query.items() if k not in ("warehouse", "role")}
        if config.warehouse_name:
            query["warehouse"] = config.warehouse_name
        if config.role_name:
            query["role"] = config.role_name
        path = "/".join(p for p in (config.database_name, config.schema_name) if p) or None
        return URL.create(
            "snowflake+floe",
            username=config.user_name,
            password=config.password.get_secret_value() if config.password else None,
            host=config.account_name,
            database=path,
            query=query,
        )

    def engine_options(self) -> dict[str, Any]:
        connector_log = logging.getLogger("snowflake.connector")
        if connector_log.level == logging.NOTSET:  # its DEBUG lines quote statements with bound values
            connector_log.setLevel(logging.INFO)
        config = self.config
        args: dict[str, Any] = {
            "login_timeout": max(1, math.ceil(config.timeouts.connect)),
            "application": "floe-compute",
            # NUMBER(p, s) as Arrow decimal128(p, s), exact and as described, not float64
            "arrow_number_to_decimal": True,
            "backoff_policy": _snowflake_retry.bounded_backoff,  # re-sends end at the deadline
        }
        args.update({k: getattr(config, k) for k in _ENDPOINT_KEYS if getattr(config, k) is not None})
        if config.settings:
            args["session_parameters"] = dict(config.settings)
        if config.private_key_path is not None:
            args["private_key"] = self._read_private_key()
        options: dict[str, Any] = {"connect_args": args}
        if config.pool.recycle is None:
            options["pool_recycle"] = self.default_recycle_s
        return options

    def _read_private_key(self) -> bytes:
        """The key as DER bytes for the connector; the passphrase never leaves this function."""
        from cryptography.hazmat.primitives import serialization

        path, phrase = self.config.private_key_path, self.config.private_key_passphrase
        assert path is not None
        try:
            key = serialization.load_pem_private_key(
                path.read_bytes(), password=phrase.get_secret_value().encode() if phrase else None
            )
        except OSError as exc:
            raise ConfigError(f"private_key_path: cannot read {path}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            # the message never quotes the passphrase; scrubbed all the same
            detail = self.scrub(str(exc).split("\n")[0])
            raise ConfigError(
                f"private_key_path: {path} is not a PEM private key that the passphrase given opens "
                f"({detail})"
            ) from None
        der, pkcs8 = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8
        return key.private_bytes(der, pkcs8, serialization.NoEncryption())

    def cancel(self, context: QueryContext) -> bool:
        """Send ``abort-request`` for the query's request id (nothing while it has none yet).

        Once Snowflake has acknowledged it, repeated calls do nothing; a failed one is tried again
        by the watchdog's repeats, a few times. A session whose query could not be aborted is
        discarded when the query ends (closing it ends what still runs in it).
        """
        state = context.state(SnowflakeQuery)
        request_id = state.request_id
        if request_id is None or state.aborted == request_id:
            return False  # not sent yet, or already aborted (that call said so)
        state.abort_attempts += 1
        if state.abort_attempts > ABORT_ATTEMPTS:
            raise ConnectionFailedError(
                f"snowflake: abort-request failed {ABORT_ATTEMPTS} times", engine=self.name
            )
        connection = context.dbapi_connection
        untrusted.add(connection)  # until Snowflake acknowledges the abort
        reply = connection.rest.request(
            "/queries/v1/abort-request?" + urlencode({"requestId": str(uuid.uuid4())}),
            {"sqlText": state.sql, "requestId": request_id},
            timeout=ABORT_TIMEOUT_S,
            _no_retry=True,  # the connector answers {} for a failure instead of retrying
        )
        if not (isinstance(reply, dict) and reply.get("success")):
            message = (reply.get("message") if isinstance(reply, dict) else None) or "no acknowledgement"
            raise ConnectionFailedError(f"snowflake: abort-request failed: {message}", engine=self.name)
        state.aborted = request_id
        untrusted.discard(connection)
        return True

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        return _snowflake_arrow.reader(dbapi_cursor, batch_size, self.engine.dialect.normalize_name)

    def arrow_type(self, column: Any, dbapi_cursor: Any) -> pa.DataType | None:
        return _snowflake_arrow.arrow_type(column)

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        if isinstance(exc, Untrusted):
            return ConnectionFailedError, str(exc)
        if not isinstance(exc, sf_errors.Error):
            return None
        errno = exc.errno if exc.errno and exc.errno > 0 else None
        message = _FORMATTED.sub("", " ".join(str(exc.raw_msg or exc.msg or type(exc).__name__).split()))
        facts = (
            [f"Snowflake error {errno:06d}" + (f" {_KNOWN[errno]}" if errno in _KNOWN else "")]
            if errno
            else []
        )
        if exc.sqlstate and exc.sqlstate != "n/a":
            facts.append(f"SQLSTATE {exc.sqlstate}")
        if exc.sfqid:
            facts.append(f"Snowflake query id {exc.sfqid}")
        detail = f"{message} ({', '.join(facts)})" if errno else message
        if errno == 604:  # SQL execution canceled (an abort-request, or SYSTEM$CANCEL_QUERY)
            return QueryCancelledError, detail
        if errno == 630:  # the statement or warehouse timeout
            return QueryTimeoutError, detail
        if (
            errno in _CONNECTION
            or isinstance(exc, sf_errors.OperationalError)
            or not isinstance(exc, sf_errors.DatabaseError)
        ):
            return ConnectionFailedError, f"{detail} (endpoint {self._endpoint()})"
        return QueryError, detail

    def never_ran(self, exc: Exception) -> str | None:
        return _snowflake_retry.never_ran(exc)

    def _endpoint(self) -> str:
        config = self.config
        host = config.host or f"{config.account_name}.snowflakecomputing.com"
        return f"{config.protocol or 'https'}://{host}:{config.port or 443}"

    def dbt_target(self) -> dict[str, Any]:
        c = self.config
        target: dict[str, Any] = {"type": "snowflake", "account": c.account_name, "user": c.user_name}
        if c.private_key_path is None:
            target["password"] = _env_var(c.dbt_password_env)
        else:
            target["private_key_path"] = str(c.private_key_path)
            if c.private_key_passphrase is not None:
                target["private_key_passphrase"] = _env_var(c.dbt_private_key_passphrase_env)
        named = {"role": c.role_name, "warehouse": c.warehouse_name, "database": c.database_name}
        target.update({k: v for k, v in named.items() if v}, schema=c.schema_name or "PUBLIC")
        target.update(
            threads=c.pool.size,
            query_tag=json.dumps({"client": "dbt", "target": c.name or "dbt"}),
            connect_timeout=max(1, math.ceil(c.timeouts.connect)),
            **{k: getattr(c, k) for k in _ENDPOINT_KEYS if getattr(c, k) is not None},
        )
        return target

    def dbt_env(self) -> dict[str, str]:
        c = self.config
        named = {c.dbt_password_env: c.password, c.dbt_private_key_passphrase_env: c.private_key_passphrase}
        return {name: secret.get_secret_value() for name, secret in named.items() if secret is not None}


def _env_var(name: str) -> str:
    return f"{{{{ env_var('{name}') }}}}"
