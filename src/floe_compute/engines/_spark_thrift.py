"""The Thrift side of the Spark engine: PyHive's connection, cursor and dialect, fixed and sped up
for the Spark Thrift Server, the cancel session, and Arrow types from the server's result schema.

Private to :mod:`floe_compute.engines.spark` (imported with it, never by the core).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyhive import exc as hive_exc
from pyhive import hive
from pyhive.sqlalchemy_hive import HiveDialect
from sqlalchemy import text
from sqlalchemy.dialects import registry
from TCLIService import ttypes
from thrift.transport import TTransport

from floe_compute.context import query_context
from floe_compute.engines._spark_literals import escape_args
from floe_compute.engines._spark_query import SparkQuery

if TYPE_CHECKING:
    import pyarrow as pa


CANCEL_TIMEOUT_S = 2.0
"""How long a cancel request may block (the watchdog waits for it)."""
SETTLE_S = 5.0
"""How long an operation cancelled while it executed stays open before it is closed. Spark's
cancel stops the statement's job group and interrupts its planning thread, but adaptive execution
submits shuffle stages from other threads: a stage whose submission was under way still starts,
after the cancel, in the same job group. Closing the operation cancels that group once more."""
FETCH_START_S = 0.2
"""A fetch younger than this may not have submitted its Spark job yet: closing the operation
now would cancel nothing and the job would start after it. The watchdog repeats the cancel."""

_State = ttypes.TOperationState
_RUNNING = {_State.INITIALIZED_STATE, _State.RUNNING_STATE, _State.PENDING_STATE}
_STOPPED = {_State.CANCELED_STATE, _State.TIMEDOUT_STATE}


class SparkConnection(hive.Connection):  # type: ignore[misc]
    """PyHive's connection, with our cursor and the session settings this plugin last sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: dict[str, str | None] = {}
        self.canceller: Canceller | None = None
        """Closes the operations of cancelled statements once they have settled."""

    def close(self) -> None:
        try:
            super().close()
        except LOST:  # the server is gone, and the session with it
            self._transport.close()

    def cursor(self, *args: Any, **kwargs: Any) -> SparkCursor:
        return SparkCursor(self, *args, **kwargs)


class SparkCursor(hive.Cursor):  # type: ignore[misc]
    """Fetches a whole server batch per ``fetchmany`` (PyHive pops rows one at a time), and binds
    bytes and decimals."""

    arraysize: int
    _operationHandle: Any
    _floe_state: SparkQuery | None = None

    def execute(self, operation: str, parameters: Any = None, **kwargs: Any) -> None:
        if parameters is not None:
            operation, parameters = operation % escape_args(parameters), None
        super().execute(operation, parameters, **kwargs)

    def _reset_state(self) -> None:
        state, self._floe_state = self._floe_state, None
        if state is not None and state.settle and self._connection.canceller is not None:
            # cancelled while executing: close later, when late shuffle stages have started
            handle, self._operationHandle = self._operationHandle, None
            if handle is not None:
                self._connection.canceller.close_later(handle, SETTLE_S)
        with contextlib.suppress(hive_exc.OperationalError):  # its operation was closed by a cancel
            super()._reset_state()

    def fetch_columns(self) -> list[list[Any]]:
        """One server batch as columns (empty when the result is exhausted)."""
        with lost_as_operational_error():
            return self._fetch_columns()

    def _fetch_columns(self) -> list[list[Any]]:
        request = ttypes.TFetchResultsReq(
            operationHandle=self._operationHandle,
            orientation=ttypes.TFetchOrientation.FETCH_NEXT,
            maxRows=self.arraysize,
        )
        state = self._floe_state
        if state is not None:  # a cancel now waits until this fetch's job has started
            state.fetch_started = time.monotonic()
        try:
            response = self._connection.client.FetchResults(request)
        finally:
            if state is not None:
                state.fetch_started = None
        hive._check_status(response)
        if not response.results.columns:  # an INSERT's result: a schema, but no columns of data
            self._state = self._STATE_FINISHED
            return []
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

    def run(self, statement: str, parameters: Any, state: SparkQuery) -> None:
        """Execute asynchronously and wait, publishing the operation handle for cancel."""
        with lost_as_operational_error():
            self._run(statement, parameters, state)

    def _run(self, statement: str, parameters: Any, state: SparkQuery) -> None:
        self.execute(statement, parameters, async_=True)
        self._floe_state = state
        with state.lock:
            state.operation = self._operationHandle
            state.executed = False  # a load runs several statements as one query
            cancelled = state.cancel_requested
            if cancelled:
                state.settle = True
        if cancelled:  # cancel came before the server knew the statement: this thread sends it
            self.cancel()
        while True:
            started = time.monotonic()
            status = self.poll(get_progress_update=False)
            if status.operationState == _State.FINISHED_STATE:
                with state.lock:
                    state.executed = True
                return
            if status.operationState not in _RUNNING:
                if status.operationState in _STOPPED:  # by us or by the server's own timeout
                    state.settle = True
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


LOST = (TTransport.TTransportException, EOFError, OSError)
"""What the Thrift layer raises when the server went away (PyHive lets them through as they are)."""
_LOST_MESSAGE = "the connection to the Thrift server was lost"


@contextlib.contextmanager
def lost_as_operational_error() -> Iterator[None]:
    """A DBAPI error for a lost connection, so SQLAlchemy invalidates it instead of pooling it."""
    try:
        yield
    except LOST as exc:
        raise hive_exc.OperationalError(f"{_LOST_MESSAGE}: {exc or type(exc).__name__}") from exc


class FloeSparkDialect(HiveDialect):  # type: ignore[misc]
    """PyHive's ``hive`` dialect, fixed for Spark, running the plugin's statements asynchronously."""

    name = "spark"
    driver = "floe_thrift"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return hive

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        self._execute(cursor, statement, parameters, context)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        # the core runs a string without parameters through here: it must be as cancellable
        self._execute(cursor, statement, None, context)

    def _execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> None:
        query = query_context(context)
        if query is None or query.cursor is not cursor or not isinstance(cursor, SparkCursor):
            with lost_as_operational_error():
                cursor.execute(statement, parameters)
        else:
            cursor.run(statement, parameters, query.state(SparkQuery))

    def do_ping(self, dbapi_connection: Any) -> bool:
        """``GetInfo`` on the session: one round trip, and no statement for Spark to plan."""
        request = ttypes.TGetInfoReq(dbapi_connection.sessionHandle, ttypes.TGetInfoType.CLI_SERVER_NAME)
        try:
            response = dbapi_connection.client.GetInfo(request)
        except LOST:  # a restarted or unreachable server: the pool opens a new connection
            return False
        # an unknown session (the server restarted behind a proxy) is as gone as a closed socket
        return bool(response.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS)

    def is_disconnect(self, e: Exception, connection: Any, cursor: Any) -> bool:
        return isinstance(e, hive_exc.OperationalError) and isinstance(e.__cause__, LOST)

    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        # Spark's SHOW TABLES has (namespace, tableName, isTemporary); PyHive takes column 0
        return self._names(connection, "SHOW TABLES", schema, views=False)

    def has_table(self, connection: Any, table_name: str, schema: Any = None, **kw: Any) -> bool:
        # PyHive runs DESCRIBE <name>, which Spark also answers for a query (DESCRIBE QUERY):
        # pandas.read_sql("SELECT ...") would take the statement for a table
        names = self._names(connection, "SHOW TABLES", schema, views=True)
        return table_name.lower() in {name.lower() for name in names}

    def get_pk_constraint(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        return {"constrained_columns": [], "name": None}  # PyHive returns a list; Spark has none

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


class Canceller:
    """One extra Thrift session per plugin, opened on first use, that sends ``CancelOperation``."""

    def __init__(self, connect: Any) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._connection: SparkConnection | None = None
        self._pending: dict[int, tuple[threading.Timer, Any]] = {}

    def open(self) -> None:
        """Open the session ahead of the first cancel, so a deadline is not overshot by a connect."""
        with self._lock:
            if self._connection is None:
                self._connection = self._connect(read_timeout=CANCEL_TIMEOUT_S)

    def cancel(self, handle: Any, *, executed: bool) -> None:
        """``CancelOperation`` while the statement executes. Once it has executed, Spark ignores a
        cancel (the state is final) although fetching may run jobs (incremental collect): closing
        the operation is what cancels its job group then."""
        if executed:
            request: Any = ttypes.TCloseOperationReq(operationHandle=handle)
        else:
            request = ttypes.TCancelOperationReq(operationHandle=handle)
        with self._lock:
            for attempt in (1, 2):  # the server may have restarted since the session was opened
                try:
                    if self._connection is None:
                        self._connection = self._connect(read_timeout=CANCEL_TIMEOUT_S)
                    client = self._connection.client
                    # an operation that already ended answers with an error status: nothing to do
                    (client.CloseOperation if executed else client.CancelOperation)(request)
                    return
                except Exception:
                    self._close()
                    if attempt == 2:
                        raise

    def close_later(self, handle: Any, delay: float) -> None:
        """``CloseOperation`` for ``handle`` after ``delay`` seconds (or at :meth:`close`)."""
        timer = threading.Timer(delay, self._close_operation, (handle,))
        timer.daemon = True
        with self._lock:
            self._pending[id(timer)] = (timer, handle)
        timer.start()

    def _close_operation(self, handle: Any) -> None:
        with self._lock:
            for key, (_, pending) in list(self._pending.items()):
                if pending is handle:
                    del self._pending[key]
            for _ in (1, 2):  # the cancel session may have broken since (a timeout, a restart)
                try:
                    if self._connection is None:
                        self._connection = self._connect(read_timeout=CANCEL_TIMEOUT_S)
                    request = ttypes.TCloseOperationReq(operationHandle=handle)
                    self._connection.client.CloseOperation(request)
                    return
                except Exception:  # a restarted server has forgotten the operation anyway
                    self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken
                connection._transport.close()

    def close(self) -> None:
        with self._lock:
            pending = list(self._pending.values())
        for timer, handle in pending:  # the plugin is going away: close them now
            timer.cancel()
            self._close_operation(handle)
        with self._lock:
            self._close()


def arrow_schema(columns: list[Any]) -> pa.Schema:
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


def to_batch(columns: list[list[Any]], schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    arrays = []
    for values, field in zip(columns, schema, strict=True):
        if pa.types.is_date32(field.type):  # PyHive passes dates through as 'YYYY-MM-DD'
            arrays.append(pa.array(values, pa.string()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
