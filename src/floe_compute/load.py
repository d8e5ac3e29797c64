"""Bulk load: Arrow data into a table on the engine's native path, run as one query.

The core checks everything that can be checked before data is sent (the mode, the data's schema,
the table's columns against the data's, by name), then hands the batches to the engine's
``load_batches`` hook on one pooled connection, in one transaction. A load is a query like any
other to the rest of the library: it has a query id, a deadline, tags and a span,
``running_queries()`` lists it and ``cancel_query()`` stops it on the engine; a failure, a
deadline, a cancel or Ctrl-C rolls it back where the engine has transactions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from floe_compute import prepare
from floe_compute.context import QUERY_OPTION, QueryContext, StatementStopped
from floe_compute.errors import ComputeError, ConfigError
from floe_compute.lifecycle import QueryLifecycle
from floe_compute.timeouts import QueryHandle, QueryState, watchdog
from floe_compute.workers import wait_briefly

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection

    from floe_compute.running import RunningQueries
    from floe_compute.workers import Workers

__all__ = ["MODES", "LoadResult", "aload", "load", "run_statement"]

MODES = ("append", "create", "replace")
"""``append``: into an existing table, columns matched by name; ``create``: a new table from the
data's schema; ``replace``: create, or drop and create, in the load's transaction."""

CANCEL_GRACE_S = 1.0
"""How long a cancelled asyncio task waits for its load to give the connection back."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a finished (committed) load wrote."""

    table: str
    rows: int
    bytes: int
    """The Arrow size of the data sent (``RecordBatch.nbytes``), not what the engine stores."""
    seconds: float
    query_id: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def load(
    lifecycle: QueryLifecycle,
    checkout: Callable[[QueryHandle], Connection],
    table: str,
    data: Any,
    *,
    mode: str = "append",
    timeout: float | None = None,
    query_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    batch_size: int | None = None,
) -> LoadResult:
    """Load ``data`` into ``table``: see :meth:`ComputePlugin.load_arrow`."""
    hooks = lifecycle.hooks
    if mode not in MODES:
        raise ConfigError(f"load mode {mode!r} is not valid: expected one of {', '.join(MODES)}")
    if hooks.load_path is None:
        raise ComputeError(
            f"{hooks.name}: load_arrow has no native load path on this engine yet "
            "(load with execute() statements meanwhile)",
            engine=hooks.name,
        )
    parts = _table_parts(table)
    schema, batches = arrow_stream(data, prepare.check_batch_size(batch_size))
    statement = f"INSERT INTO {table} /* load_arrow {mode} */"
    context = prepare.new_context(hooks, statement, timeout, query_id, tags)
    connection = _register_and_checkout(lifecycle, checkout, context)
    counter = _Counter(context)
    failure: BaseException | None = None
    try:
        with lifecycle.telemetry.current(context):
            hooks.begin_query(connection, context)
            if not connection.in_transaction():
                connection.begin()
            names = _target_columns(connection, parts, table, schema, mode)
            target = _quoted(connection, parts)
            hooks.load_batches(
                connection, context, target, _renamed(schema, names), counter.wrap(batches, names), mode
            )
    except BaseException as exc:
        # the data's own error (a Ctrl-C in the producer, a bad batch), not the engine's wrapping of it
        cause = counter.error or exc
        failure = lifecycle.fail(context, connection, cause, counter.rows)  # raised below: not chained
    if failure is not None:
        raise failure
    if context.handle.settle() is not QueryState.DONE:  # stopped just as it finished
        raise lifecycle.fail(context, connection, None, counter.rows)
    lifecycle.finish(context, connection, None, counter.rows)
    seconds = time.perf_counter() - context.started
    return LoadResult(table, counter.rows, counter.bytes, seconds, context.query_id)


async def aload(
    call: Callable[[], LoadResult], query_id: str, workers: Workers, running: RunningQueries
) -> LoadResult:
    """Run a load on a worker thread; a cancelled task cancels the load on the engine (rolled
    back) and waits briefly, shielded, for its connection to come back."""
    import asyncio  # imported by asyncio's users only

    future = workers.submit("execute", call)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if not future.cancel():
            running.cancel_or_preempt(query_id)
            await wait_briefly(future, CANCEL_GRACE_S)
        running.forget_preempted(query_id)
        raise


def run_statement(connection: Connection, context: QueryContext, statement: str) -> Any:
    """Run one statement of a load as the load's own (tags, the engine's cancel bookkeeping, a
    stopped load never starting it), for engines whose path is several statements."""
    options = {QUERY_OPTION: context, "no_parameters": True}
    return connection.execution_options(**options).exec_driver_sql(statement)


def arrow_stream(data: Any, batch_size: int | None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The schema and a lazy stream of record batches of a Table, a RecordBatchReader, an
    iterable of RecordBatch, or anything with the Arrow C stream interface (pandas, polars)."""
    import pyarrow as pa

    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return data.schema, iter(data.to_batches(max_chunksize=batch_size))
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data)
    if hasattr(data, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(data)
        return reader.schema, iter(reader)
    if _is_pandas(data):
        return arrow_stream(pa.Table.from_pandas(data, preserve_index=False), batch_size)
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)):
        batches = iter(data)
        first = next(batches, None)
        if not isinstance(first, pa.RecordBatch):
            raise ConfigError(
                "load_arrow data: an iterable must yield pyarrow.RecordBatch objects, "
                f"got {'nothing' if first is None else type(first).__name__} first"
            )
        return first.schema, _chain(first, batches)
    raise ConfigError(
        f"load_arrow data: expected a pyarrow Table, RecordBatchReader, an iterable of RecordBatch "
        f"or a DataFrame, got {type(data).__name__}"
    )


def _is_pandas(data: Any) -> bool:
    return type(data).__module__.startswith("pandas") and hasattr(data, "columns")


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _table_parts(table: str) -> list[str]:
    parts = table.split(".") if isinstance(table, str) else []
    if not parts or not all(p.strip() == p and p for p in parts) or len(parts) > 3:
        raise ConfigError(
            f"load_arrow table {table!r} is not valid: expected name, schema.name or catalog.schema.name"
        )
    return parts


def _quoted(connection: Connection, parts: list[str]) -> str:
    preparer = connection.dialect.identifier_preparer
    return ".".join(preparer.quote(p) for p in parts)


def _register_and_checkout(
    lifecycle: QueryLifecycle, checkout: Callable[[QueryHandle], Connection], context: QueryContext
) -> Connection:
    """List the load, arm its deadline and take a connection (a deadline or a cancel ends the
    wait); on failure the load ends unlisted."""
    lifecycle.running.add(context)
    context.span = lifecycle.telemetry.query_started(context)
    watchdog.watch(context.handle)
    failure: BaseException | None = None
    try:
        if context.handle.stopped:
            raise StatementStopped
        connection = checkout(context.handle)
    except BaseException as exc:
        context.handle.finish()
        lifecycle.running.remove(context)
        error = lifecycle.query_error(exc, context) if context.handle.stopped else exc
        lifecycle.telemetry.query_finished(context, error, 0)
        if error is exc:
            raise
        failure = error  # raised below: not chained to the driver's error
    if failure is not None:
        raise failure
    context.connection = connection
    context.dbapi_connection = connection.connection.dbapi_connection
    context.handle.bind(partial(lifecycle.hooks.cancel, context))
    return connection


def _target_columns(
    connection: Connection, parts: list[str], table: str, schema: pa.Schema, mode: str
) -> list[str]:
    """The table's name for each column of the data; a ConfigError naming the columns that do
    not match (append) or the table that exists (create), before any data is sent."""
    names = list(schema.names)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"load_arrow into {table}: the data has duplicate columns {duplicates}")
    if mode == "append":
        return match_columns(table, names, _existing_columns(connection, parts, table))
    if mode == "create" and sa.inspect(connection).has_table(parts[-1], schema=_owner(parts)):
        raise ConfigError(
            f"load_arrow into {table}: the table exists (mode 'create'); use 'append' or 'replace'"
        )
    return names


def _owner(parts: list[str]) -> str | None:
    return parts[-2] if len(parts) > 1 else None


def _existing_columns(connection: Connection, parts: list[str], table: str) -> list[str]:
    """The table's columns as the engine describes a result (reflection took 80-140 ms on DuckDB);
    whether the table exists is asked only when that fails, a round trip saved on every load."""
    try:
        return list(
            connection.exec_driver_sql(f"SELECT * FROM {_quoted(connection, parts)} WHERE 1 = 0").keys()
        )
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        connection.rollback()  # a failed statement ends the transaction on some engines
        if sa.inspect(connection).has_table(parts[-1], schema=_owner(parts)):
            raise
    raise ConfigError(f"load_arrow into {table}: no such table (mode 'append'); use mode 'create'")


def match_columns(table: str, names: list[str], columns: list[str]) -> list[str]:
    """Each data column's table column: the same name, else the only one equal ignoring case."""
    folded: dict[str, list[str]] = {}
    for column in columns:
        folded.setdefault(column.lower(), []).append(column)
    matched: list[str] = []
    extra: list[str] = []
    for n in names:
        same = [n] if n in columns else folded.get(n.lower(), [])
        if len(same) == 1:
            matched.append(same[0])
        else:
            extra.append(n)
    missing = [c for c in columns if c not in matched]
    if extra or missing:
        found = [f"not in the table: {', '.join(extra)}"] if extra else []
        found += [f"not in the data: {', '.join(missing)}"] if missing else []
        raise ConfigError(f"load_arrow into {table}: columns do not match by name ({'; '.join(found)})")
    return matched


def _renamed(schema: pa.Schema, names: list[str]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([field.with_name(n) for field, n in zip(schema, names, strict=True)])


class _Counter:
    """Counts what passes to the engine, and stops the stream once the load is stopped."""

    def __init__(self, context: QueryContext) -> None:
        self._handle = context.handle
        self.rows = 0
        self.bytes = 0
        self.error: BaseException | None = None

    def wrap(self, batches: Iterator[pa.RecordBatch], names: list[str]) -> Iterator[pa.RecordBatch]:
        """The batches, renamed; an error of the data's source is kept, because an engine that
        pulls the stream itself (DuckDB) reports it as an error of its own."""
        try:
            yield from self._checked(batches, names)
        except StatementStopped:
            raise
        except BaseException as exc:
            self.error = exc
            raise

    def _checked(self, batches: Iterator[pa.RecordBatch], names: list[str]) -> Iterator[pa.RecordBatch]:
        first_schema: pa.Schema | None = None
        for batch in batches:
            if self._handle.stopped:
                raise StatementStopped
            if first_schema is None:
                first_schema = batch.schema
            elif not batch.schema.equals(first_schema):
                raise ConfigError(f"load_arrow data: a batch's schema differs from the first: {batch.schema}")
            self.rows += batch.num_rows
            self.bytes += batch.nbytes
            yield batch.rename_columns(names)
        if self._handle.stopped:
            raise StatementStopped
