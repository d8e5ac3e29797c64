"""A small DB-API 2 module over the Spark Connect client (``pyspark-client``): one connection is one
Spark Connect session, a cursor streams the server's own Arrow batches.

Why not PyHive or the Thrift server: Spark Connect sends results as Arrow batches over gRPC, so
``arrow_batches()`` hands on Spark's own batches instead of building them from Thrift columns.
Every statement runs with an operation tag of its own (``floe-op-<uuid>``), set in the thread that
sends it (Spark Connect's tags are per thread), so any thread can stop it with ``interruptTag``.

Private to :mod:`floe_compute.engines.spark_connect`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from floe_compute.engines._spark_connect_errors import (  # the DB-API module's names
    SESSION_GONE,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
    to_dbapi_error,
)


@contextlib.contextmanager
def _not_a_doctest() -> Iterator[None]:
    """pyspark's Connect package takes a process whose ``__main__`` has no file (``python -c``, an
    xdist worker, an embedded interpreter) for its own doctest run and exits it at import: give
    ``__main__`` a file name while it is imported."""
    main = sys.modules.get("__main__")
    fake = main is not None and main.__spec__ is None and not hasattr(main, "__file__")
    if fake:
        main.__file__ = "<floe-compute>"  # type: ignore[union-attr]
    try:
        yield
    finally:
        if fake:
            del main.__file__  # type: ignore[union-attr]


with _not_a_doctest(), warnings.catch_warnings():  # "PySpark does not yet fully support pandas >= 3"
    warnings.simplefilter("ignore", FutureWarning)
    from pyspark.sql.connect import functions as F
    from pyspark.sql.connect.client import DefaultChannelBuilder
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.dataframe import DataFrame
    from pyspark.sql.connect.plan import SQL
    from pyspark.sql.connect.session import SparkSession
    from pyspark.sql.pandas.types import to_arrow_schema


if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType

__all__ = [
    "SESSION_GONE", "Connection", "Cursor", "DataError", "DatabaseError", "Error", "IntegrityError",
    "InterfaceError", "InternalError", "NotSupportedError", "OperationalError", "ProgrammingError",
    "Warning", "apilevel", "connect", "paramstyle", "threadsafety", "to_dbapi_error",
]  # fmt: skip


def _quiet_retries() -> None:
    """pyspark warns as its retries give up, then raises the error this module reports: the
    warning says nothing more. A filter (catch_warnings() is not thread-safe), set again by each
    connection in case the application reset the filters since the import (pytest does per test)."""
    warnings.filterwarnings(
        "ignore",
        message=r"\[RETRIES_EXCEEDED\]",
        category=UserWarning,
        module=r"pyspark\.sql\.connect\.client",
    )


_quiet_retries()

apilevel = "2.0"
threadsafety = 1  # a connection (one Spark session) serves one statement at a time
paramstyle = "named"  # Spark SQL's own named parameter markers: ``:name``

# the client logs each server error (with the JVM stack trace and the message, which may quote a
# bound value) on loggers of its own that do not propagate: the library reports errors itself
_QUIET_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger", "pyspark.sql.connect.client")
STOP_SETTINGS = {
    # errors without the server's JVM stack trace (the message and error class are enough)
    "spark.sql.connect.serverStacktrace.enabled": "false",
    "spark.sql.pyspark.jvmStacktrace.enabled": "false",
}


class _ChannelBuilder(DefaultChannelBuilder):
    """pyspark's builder, except that a token without TLS goes to any loopback address (pyspark
    allows only the name ``localhost``, and would start TLS to ``127.0.0.1``)."""

    def toChannel(self) -> grpc.Channel:  # pyspark's name
        if self.use_ssl or self.token is None or self._host not in ("127.0.0.1", "[::1]", "localhost"):
            return super().toChannel()
        credentials = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(), grpc.access_token_call_credentials(self.token)
        )
        return self._secure_channel(self.endpoint, credentials)


def connect(url: str, **kwargs: Any) -> Connection:
    return Connection(url, **kwargs)


class Connection:
    """One Spark Connect session (``sc://`` connection string), opened within ``connect_timeout``."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 30.0,
        settings: Mapping[str, str] = {},
        database: str | None = None,
        retries: int = 3,
    ) -> None:
        _quiet_retries()
        for name in _QUIET_LOGGERS:
            quiet = logging.getLogger(name)
            if quiet.level == logging.NOTSET:
                quiet.setLevel(logging.CRITICAL + 1)
        try:
            session = SparkSession(connection=_ChannelBuilder(url))
            client = session.client
            # the default retries back off for up to ten minutes: a down server must fail fast
            client.set_retry_policies([DefaultPolicy(max_retries=retries, max_backoff=1000)])
            # a lost stream is picked up again by its operation id (run once); without this the
            # client's retries would send the statement again, a write too
            client.enable_reattachable_execute()
            grpc.channel_ready_future(client._channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            session.client.close()
            raise OperationalError(
                f"no answer from the Spark Connect server within {connect_timeout:g}s",
                grpc_code="UNAVAILABLE",
            ) from None
        except Exception as exc:
            raise to_dbapi_error(exc) from exc
        self.session = session
        self.closed = False
        try:
            for key, value in {**STOP_SETTINGS, **settings}.items():
                session.conf.set(key, value)
            if database:
                session.catalog.setCurrentDatabase(database)
        except Exception as exc:
            self.close()
            raise to_dbapi_error(exc) from exc

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        """Spark Connect has no transactions: each statement is written when it runs."""

    def rollback(self) -> None:
        """Nothing to roll back (see :meth:`commit`)."""

    def ping(self) -> bool:
        """One config RPC: no statement for Spark to plan, no job."""
        try:
            self.session.conf.get("spark.sql.session.timeZone")
        except Exception:
            return False
        return not self.session.client.is_closed

    def interrupt(self, tag: str) -> list[str]:
        """Interrupt the operations tagged ``tag`` (from any thread); the ids it stopped."""
        try:
            return list(self.session.interruptTag(tag))
        except Exception as exc:
            raise to_dbapi_error(exc) from exc

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.session.client.release_session()  # the server drops its temp views and state
        except Exception:  # the server is gone, and the session with it
            pass
        finally:
            self.session.client.close()


class Cursor:
    """Runs one statement at a time and streams its Arrow batches; rows come from the same batches."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 10_000
        self.rowcount = -1
        self.description: list[tuple[Any, ...]] | None = None
        self.tag: str | None = None
        self.arrow_schema: pa.Schema | None = None
        self._stream: Iterator[Any] | None = None
        self._pending: pa.RecordBatch | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    # -- execute ----------------------------------------------------------------------------

    def execute(
        self,
        operation: str,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        tag: str | None = None,
        tags: Sequence[str] = (),
    ) -> Cursor:
        """Send the statement with its operation tag (``tag``, default: a new one) and job
        ``tags``; returns once the server has started it and sent the result's schema (a command
        has run by then)."""
        self._finish()
        session = self.connection.session
        named = {str(k): F.lit(v) for k, v in parameters.items()} if isinstance(parameters, Mapping) else None
        positional = [F.lit(v) for v in parameters] if parameters and named is None else None
        self.tag = tag = tag or f"floe-op-{uuid.uuid4().hex}"
        added = [tag, *(t for t in tags if t)]
        for each in added:  # read when the request is built: in this thread, on the first next()
            session.addTag(each)
        try:
            frame = DataFrame(SQL(operation, positional, named), session)
            stream = session.client.to_table_as_iterator(frame._plan.to_proto(session.client), {})
            schema = next(stream)
            self._pending = self._next_batch(stream)
        except StopIteration:
            raise InterfaceError("the server sent no result schema") from None
        except Exception as exc:
            raise to_dbapi_error(exc) from exc
        finally:
            for each in added:
                session.removeTag(each)
        self._stream = stream
        self._describe(schema)
        return self

    def _describe(self, schema: StructType) -> None:
        self.description = [
            (
                f.name,
                f.dataType.simpleString(),
                None,
                None,
                getattr(f.dataType, "precision", None),
                getattr(f.dataType, "scale", None),
                f.nullable,
            )
            for f in schema.fields
        ]
        self.arrow_schema = to_arrow_schema(schema, timezone="UTC")

    def _next_batch(self, stream: Iterator[Any]) -> pa.RecordBatch | None:
        for item in stream:
            for batch in item.to_batches():
                if batch.num_rows:
                    return batch
        return None

    def batches(self, size: int | None = None) -> Iterator[pa.RecordBatch]:
        """The rest of the result, batch by batch as the server sent them (typed by its schema),
        a batch longer than ``size`` rows in slices (zero-copy)."""
        schema = self.arrow_schema
        while True:
            with self._lock:
                batch, self._pending = self._pending, None
                if batch is None and self._stream is not None:
                    try:
                        batch = self._next_batch(self._stream)
                    except Exception as exc:
                        raise to_dbapi_error(exc) from exc
                    if batch is None:
                        self._stream = None
            if batch is None:
                return
            if schema is not None and batch.schema != schema:
                batch = batch.cast(schema)
            if size is None or batch.num_rows <= size:
                yield batch
            else:
                for offset in range(0, batch.num_rows, size):
                    yield batch.slice(offset, size)

    def arrow_reader(self, size: int | None = None) -> pa.RecordBatchReader:
        import pyarrow as pa

        assert self.arrow_schema is not None, "no result to read"
        if self._rows:  # rows already taken from the first batch: hand on the rest of it first
            raise InterfaceError("Arrow batches after fetching rows of the same result")
        return pa.RecordBatchReader.from_batches(self.arrow_schema, self.batches(size))

    # -- rows -------------------------------------------------------------------------------

    def _fill(self, size: int) -> None:
        batches = self.batches()
        while len(self._rows) < size:
            batch = next(batches, None)
            if batch is None:
                return
            self._rows.extend(zip(*(column.to_pylist() for column in batch.columns), strict=True))

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        size = size or self.arraysize
        self._fill(size)
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._fill(2**62)
        rows, self._rows = self._rows, []
        return rows

    # -- end --------------------------------------------------------------------------------

    def _finish(self) -> None:
        """Stop what is left of the previous result: interrupt its operation if it still streams."""
        stream, self._stream, self._pending, self._rows = self._stream, None, None, []
        self.description = self.arrow_schema = None
        if stream is not None and self.tag is not None and not self.connection.closed:
            with contextlib.suppress(Exception):  # the server is gone: so is the operation
                self.connection.session.interruptTag(self.tag)
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # its RPC already ended with the interrupt
                    close()

    def close(self) -> None:
        self._finish()

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass
