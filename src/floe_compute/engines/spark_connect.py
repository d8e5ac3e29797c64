"""Spark through Spark Connect (gRPC, Arrow batches): ``spark+connect://host:15002/database`` or
Spark's own ``sc://host:15002/;token=...;use_ssl=true``.

Results are the server's own Arrow batches, streamed as they arrive (``arrow_batches()`` hands
them on; rows are read from the same batches). One pooled connection is one Spark Connect session,
so temporary views live as long as the connection. Each statement carries an operation tag of its
own plus job tags for the query's id and tags; cancel interrupts that tag from any thread
(``interruptTag``), which stops the statement's Spark jobs on the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import model_validator
from sqlalchemy.engine import URL, Connection

from floe_compute.config import ComputeConfig, parse_url, url_query_fields
from floe_compute.context import QueryContext
from floe_compute.engines import _spark_connect_dbapi as dbapi
from floe_compute.engines import _spark_connect_load
from floe_compute.engines._hiveserver2 import sqlstate_class
from floe_compute.engines._spark_connect_dialect import SparkConnectDialect, SparkConnectQuery
from floe_compute.errors import ComputeError, ConnectionFailedError, QueryError, ResourceLimitError
from floe_compute.plugin import ComputePlugin

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SparkConnectComputePlugin", "SparkConnectConfig", "SparkConnectDialect"]

DEFAULT_PORT = 15002
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_TAG_UNSAFE = re.compile(r"[,\s]+")  # Spark refuses a tag with a comma
_PARAMS = ("use_ssl", "user_id")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class SparkConnectConfig(ComputeConfig):
    """A Spark Connect server: ``spark+connect://host:15002/database`` or ``sc://host:15002``, with
    Spark's parameters (``;token=...;use_ssl=true;user_id=...``) or as a URL query."""

    use_ssl: bool = False
    """TLS to the server (Spark's ``use_ssl``). A token is sent without TLS only to a loopback address."""
    user_id: str | None = None
    """The user name the server sees (Spark's ``user_id``); default: the URL's user, else the client's."""
    dbt_token_env: str = "SPARK_CONNECT_TOKEN"
    """The environment variable the dbt profile's ``SPARK_REMOTE`` reads the token from."""

    engine_title: ClassVar[str | None] = "Spark Connect"
    unsupported_limits: ClassVar[Mapping[str, str]] = {
        "memory_limit": "executor and driver memory are cluster settings (spark.executor.memory)",
        "threads": "parallelism is a cluster setting (spark.executor.cores, spark.sql.shuffle.partitions)",
        "temp_directory": "spark.local.dir is a cluster setting",
        "max_temp_directory_size": "Spark has no per-session spill limit",
    }

    @model_validator(mode="before")
    @classmethod
    def _spark_parameters(cls, data: Any) -> Any:
        """Spark's ``/;token=...;use_ssl=true`` becomes ``password`` and config fields."""
        if not isinstance(data, dict) or data.get("url") is None:
            return data
        try:
            url = parse_url(data["url"])
        except ValueError:
            return data
        database, _, rest = (url.database or "").partition(";")
        if rest or url.database == "":  # sc://host:port/ has no database either
            data = {**data, "url": url._replace(database=database or None)}  # set() ignores None
        if rest:
            pairs = dict(p.partition("=")[::2] for p in rest.split(";") if p)
            if "token" in pairs:
                data.setdefault("password", pairs.pop("token"))
            for key in _PARAMS:
                if key in pairs:
                    data.setdefault(key, pairs.pop(key))
            if pairs:
                raise ValueError(f"url: unknown Spark Connect parameter(s) {', '.join(sorted(pairs))}")
        found = url_query_fields(data, _PARAMS)
        if found is not None:
            data, moved = found
            for key, value in moved.items():
                data.setdefault(key, value)
        return data

    @model_validator(mode="after")
    def _check(self) -> SparkConnectConfig:
        name = self.url.drivername
        if name not in ("sc", "spark+connect"):
            raise ValueError(f"url: {name} is not Spark Connect; use spark+connect:// or sc://")
        if not self.url.host:
            raise ValueError("url: the Spark Connect server's host is missing (sc://host:15002)")
        if self.password is not None and not self.use_ssl and self.url.host not in _LOOPBACK:
            raise ValueError("password: a token is sent only with use_ssl=true (or to a loopback address)")
        for key in self.settings:
            if not _SETTING_NAME.match(key):
                raise ValueError(f"settings: {key!r} is not a Spark setting name")
        return self

    @property
    def port(self) -> int:
        return self.url.port or DEFAULT_PORT

    def connection_string(self, token: bool = True) -> str:
        """Spark's ``sc://`` string for the client (the token only when ``token``)."""
        params = {"user_agent": "floe-compute"}
        if self.use_ssl:
            params["use_ssl"] = "true"
        if user := self.user_id or self.url.username:
            params["user_id"] = user
        if token and self.password is not None:
            params["token"] = self.password.get_secret_value()
        return f"sc://{self.url.host}:{self.port}/;" + ";".join(f"{k}={v}" for k, v in params.items())


class SparkConnectComputePlugin(ComputePlugin):
    """Spark SQL over Spark Connect, with Spark's own Arrow batches and cancel by operation tag."""

    name = "spark-connect"
    schemes = ("spark+connect", "sc")
    config_class = SparkConnectConfig
    db_system = "spark_sql"
    sql_dialect = "spark"
    default_batch_size = 10_000
    has_transactions = False  # an INSERT is written when it runs; commit() does nothing
    load_path = "createDataFrame from Arrow, written with saveAsTable (not atomic)"
    load_batches = _spark_connect_load.load_batches

    if TYPE_CHECKING:  # the core checked it is a SparkConnectConfig (config_class); no override to call

        @property
        def config(self) -> SparkConnectConfig: ...

    def _open(self) -> dbapi.Connection:
        config = self.config
        settings = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.settings.items()}
        return dbapi.connect(
            config.connection_string(),
            connect_timeout=config.timeouts.connect,
            settings=settings,
            database=config.url.database,
        )

    def engine_url(self) -> URL:
        return URL.create("spark+floe_connect", host=self.config.url.host, port=self.config.port)

    def engine_options(self) -> dict[str, Any]:
        return {"creator": self._open}

    # -- queries ----------------------------------------------------------------------------

    def begin_query(self, connection: Connection, context: QueryContext) -> None:
        tags = [f"floe-query-{context.query_id}"]
        tags += [f"floe-tag-{k}={v}" for k, v in context.tags.items()]
        context.state(SparkConnectQuery).tags = tuple(_TAG_UNSAFE.sub("_", t) for t in tags)

    def cancel(self, context: QueryContext) -> bool:
        state = context.state(SparkConnectQuery)
        with state.lock:
            state.cancelled = True
            connection, tag = state.connection, state.operation_tag
        if connection is None or tag is None:  # not sent yet: the dialect will not send it
            return False
        return bool(connection.interrupt(tag))

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        """The server's own batches, as they arrive; one longer than ``batch_size`` rows is handed
        on in zero-copy slices (the server's batch size is ``spark.connect.grpc.arrow.maxBatchSize``,
        in bytes)."""
        if not isinstance(dbapi_cursor, dbapi.Cursor) or dbapi_cursor.arrow_schema is None:
            return None
        return dbapi_cursor.arrow_reader(batch_size)

    def arrow_type(self, column: Any, dbapi_cursor: Any) -> pa.DataType | None:
        """The server's Arrow type of a column, for batches built after rows were fetched."""
        if not isinstance(dbapi_cursor, dbapi.Cursor) or dbapi_cursor.arrow_schema is None:
            return None
        description = dbapi_cursor.description or []
        index = next((i for i, entry in enumerate(description) if entry is column), None)
        return None if index is None else dbapi_cursor.arrow_schema.field(index).type

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        if not isinstance(exc, dbapi.Error):
            return None
        detail = str(exc)
        if exc.sqlstate:
            kind = sqlstate_class(exc.sqlstate)
            detail += f" (SQLSTATE {exc.sqlstate}{', ' + kind if kind else ''})"
        if isinstance(exc, dbapi.OperationalError) and exc.sqlstate is None:
            return ConnectionFailedError, detail
        if exc.sqlstate and exc.sqlstate.startswith(("53", "54")):
            return ResourceLimitError, detail
        return QueryError, detail

    # -- dbt --------------------------------------------------------------------------------

    def dbt_target(self) -> dict[str, Any]:
        """dbt-spark's ``session`` method: it runs on the Spark session ``SPARK_REMOTE`` names."""
        config = self.config
        return {
            "type": "spark",
            "method": "session",
            "host": "NA",
            "schema": config.url.database or "default",
            "threads": 1,
            "server_side_parameters": {k: str(v) for k, v in config.settings.items()},
        }

    def dbt_env(self) -> dict[str, str]:
        remote = self.config.connection_string(token=self.config.password is not None)
        return {"SPARK_REMOTE": remote}
