"""The DB-API cursor and SQLAlchemy dialect under the BigQuery engine: every statement is a query job
of ours, and every blocking call of a query can be abandoned when the query is stopped.

Nothing in the REST client can be interrupted: a call blocks until BigQuery answers. So each blocking
call of a query (the job's insert and wait, each page of results) runs in a helper thread that the
caller waits on; the engine's ``cancel`` wakes the caller at once, and the abandoned call finishes
(or fails) on its own, its answer dropped. Rows and Arrow batches both come from the client's own
Arrow conversion (``to_arrow_iterable``), one REST page at a time.
"""

from __future__ import annotations

import contextvars
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

import google.cloud.exceptions
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery import dbapi
from google.cloud.bigquery.dbapi import _helpers
from google.cloud.bigquery.dbapi.cursor import Cursor
from sqlalchemy.dialects import registry
from sqlalchemy_bigquery.base import BigQueryDialect, BigQueryExecutionContext

from floe_compute.context import query_context
from floe_compute.engines._bigquery_session import insert_retried, note_session

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FloeBigQueryDialect", "JobAbandoned", "JobCursor", "new_job_id", "wait"]

T = TypeVar("T")
_QUOTED_PARAMETER = re.compile(r"@`([A-Za-z_][A-Za-z0-9_]*)`")
_JOB_ID_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_INSERT_RETRY = Retry(predicate=insert_retried, deadline=600.0)


def new_job_id(prefix: str) -> str:
    """A job id of ours (letters, digits, ``_`` and ``-``): the query id and a unique suffix."""
    return f"{_JOB_ID_BAD.sub('_', prefix)[:200]}_{uuid.uuid4().hex[:12]}"


@dataclass
class BigQueryQuery:
    """What a query's job calls and its ``cancel`` share (``context.state(BigQueryQuery)``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False
    """Cancelled or timed out: no job may start, no waiting call goes on."""
    job_id: str | None = None
    """The query's job, once inserted."""
    wake: threading.Event | None = None
    """Wakes the query's thread out of a blocking client call."""
    cancel_sent: str | None = None
    """The job whose cancel was sent (once per job)."""


class JobAbandoned(Exception):
    """The query was cancelled or timed out while a call to BigQuery was still running."""


def wait(state: BigQueryQuery | None, call: Callable[[], T]) -> T:
    """Run one blocking client call so that ``cancel`` can wake the caller before it returns."""
    if state is None:
        return call()
    woken = threading.Event()
    outcome: list[tuple[bool, Any]] = []
    with state.lock:
        if state.stopped:
            raise JobAbandoned("the query was stopped before this call to BigQuery")
        state.wake = woken

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            woken.set()

    # in the caller's context: the client's HTTP spans nest under the query span
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name="floe-bigquery-call", daemon=True).start()
    woken.wait()
    if not outcome:
        raise JobAbandoned("the query was stopped while BigQuery was still answering")
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


class JobCursor(Cursor):
    """The DB-API cursor, reading every result as the client's Arrow pages.

    ``fetchmany`` returns tuples built from those pages (column-wise, no ``Row`` objects), and the
    plugin's Arrow reader hands out the same pages: both read one REST page at a time.
    """

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)  # type: ignore[no-untyped-call]
        self.state: BigQueryQuery | None = None
        self.job: bigquery.QueryJob | None = None
        self._reset()

    def _reset(self) -> None:
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._pending: Iterator[tuple[Any, ...]] = iter(())

    def execute(
        self, operation: str, parameters: Any = None, job_id: Any = None, job_config: Any = None
    ) -> None:
        self._reset()
        run, given = super().execute, job_id or new_job_id("floe")
        wait(self.state, lambda: run(operation, parameters, given, job_config))  # type: ignore[no-untyped-call]

    def _execute(
        self, operation: str, parameters: Any, job_id: str, job_config: Any, parameter_types: Any
    ) -> None:
        """The DB-API's, keeping the job (its session id), never retrying an insert BigQuery
        refused before the job existed (the core runs a read again as a new job instead)."""
        self._query_data = self._query_results = None
        # the DB-API writes parameters as @`name`; BigQuery takes @name too, and the emulator only that
        operation = _QUOTED_PARAMETER.sub(r"@\1", operation)
        config = job_config or bigquery.QueryJobConfig()
        config.query_parameters = _helpers.to_query_parameters(parameters, parameter_types)  # type: ignore[no-untyped-call]
        client = self.connection._client
        try:
            self.job = client.query(
                operation, job_config=config, job_id=job_id, job_retry=None, retry=_INSERT_RETRY
            )
            rows = self.job.result(page_size=self.arraysize)
        except google.cloud.exceptions.GoogleCloudError as exc:
            raise dbapi.DatabaseError(exc) from exc
        self._query_rows = rows
        self._set_description(rows.schema)  # type: ignore[no-untyped-call]
        if config.dry_run:
            self.rowcount = 0
        else:
            self._set_rowcount(rows)  # type: ignore[no-untyped-call]

    def next_batch(self) -> pa.RecordBatch | None:
        """The next page of the result as a record batch; None at the end."""
        if self._batches is None:
            rows = self._query_rows  # the RowIterator the DB-API cursor keeps after execute()
            if rows is None:
                raise dbapi.InterfaceError("No query results: execute() must be called before fetch.")
            self._batches = iter(rows.to_arrow_iterable(bqstorage_client=self.connection._bqstorage_client))
        batches = self._batches
        return wait(self.state, lambda: next(batches, None))

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        size = int(size or self.arraysize or 1)
        rows = list(islice(self._pending, size))
        while len(rows) < size:
            batch = self.next_batch()
            if batch is None:
                break
            self._pending = zip(*(column.to_pylist() for column in batch.columns), strict=True)
            rows.extend(islice(self._pending, size - len(rows)))
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(iter(self.fetchmany(1)), None)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [row for rows in iter(lambda: self.fetchmany(10_000), []) for row in rows]

    def arrow_reader(self, batch_size: int) -> pa.RecordBatchReader:
        import pyarrow as pa

        first = self.next_batch()
        if first is None:  # no page at all: an empty table of the result's schema
            assert self._query_rows is not None
            table = self._query_rows.to_arrow(bqstorage_client=self.connection._bqstorage_client)
            return pa.RecordBatchReader.from_batches(table.schema, iter(()))

        def batches() -> Iterator[pa.RecordBatch]:
            batch = first
            while batch is not None:
                for offset in range(0, batch.num_rows, batch_size):
                    yield batch.slice(offset, batch_size)
                batch = self.next_batch()

        return pa.RecordBatchReader.from_batches(first.schema, batches())


class _ExecutionContext(BigQueryExecutionContext):  # type: ignore[misc]
    def create_default_cursor(self) -> Any:
        return JobCursor(self._dbapi_connection.dbapi_connection)


class FloeBigQueryDialect(BigQueryDialect):  # type: ignore[misc]
    """sqlalchemy-bigquery, sending every statement as a job of ours with the plugin's job config."""

    execution_ctx_cls = _ExecutionContext
    supports_statement_cache = False  # as sqlalchemy-bigquery's own dialect

    @classmethod
    def import_dbapi(cls) -> Any:
        return dbapi

    def __init__(self, floe_job_config: Callable[[Any], Any] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.floe_job_config = floe_job_config

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        query = query_context(context)
        make_config = self.floe_job_config
        config = make_config(query) if make_config else self.create_job_config(None)
        if query is None or not isinstance(cursor, JobCursor):
            cursor.execute(statement, parameters, job_id=new_job_id("floe"), job_config=config)
            return
        page = context.execution_options.get("yield_per")
        if page:
            cursor.arraysize = page  # one REST page per batch
        state = query.state(BigQueryQuery)
        new_id = new_job_id(query.query_id)
        with state.lock:
            if state.stopped:  # cancelled before the job existed: never start it
                raise JobAbandoned(f"query {query.query_id} was stopped before its job was inserted")
            state.job_id = new_id
        cursor.state = state
        cursor.execute(statement, parameters, job_id=new_id, job_config=config)
        if query.session is not None:
            note_session(query.session, cursor.job)

    def get_pk_constraint(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        """From the table's ``tableConstraints`` (BigQuery keeps unenforced primary keys);
        sqlalchemy-bigquery reports none."""
        constraints = self._get_table(connection, table_name, schema).table_constraints
        key = constraints.primary_key if constraints is not None else None
        return {"constrained_columns": list(key.columns) if key is not None else [], "name": None}

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        self.do_execute(cursor, statement, None, context)  # the same job, without parameters

    def do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        # the DB-API's executemany sends jobs.query, which some endpoints answer without running it
        for params in parameters:
            self.do_execute(cursor, statement, params, context)


registry.register("bigquery.floe", __name__, "FloeBigQueryDialect")
