"""BigQuery bulk load: Arrow batches appended to a PENDING stream of the Storage Write API, then
one ``BatchCommitWriteStreams``; a Parquet load job where the Storage Write API is not reachable.

Each batch is first cast to the table's own column types (read from the table, or made from the
Arrow schema for ``create``/``replace``), so a value BigQuery cannot take is a ``QueryError``
naming its column before anything of that batch is sent. The stream's rows become visible only at
the commit, which is sent once, after the last batch was acknowledged and the stream finalized:
a load that fails, is stopped (deadline, ``cancel_query()``, Ctrl-C) or whose source raises never
commits, and BigQuery drops the pending stream. Every blocking call runs so that the cancel hook
wakes the load at once (as a query's job calls do). The load job path (an ``api_endpoint`` without
``storage_endpoint``) writes one Parquet file and runs one ``WRITE_APPEND`` load job, atomic too.

Private to :mod:`floe_compute.engines.bigquery`.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from floe_compute.engines._bigquery_jobs import BigQueryQuery, JobAbandoned, new_job_id, wait
from floe_compute.errors import ConfigError, QueryError
from floe_compute.load import run_statement

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
    from sqlalchemy.engine import Connection

    from floe_compute.context import QueryContext
    from floe_compute.engines._bigquery_session import BigQueryEngine

__all__ = ["bigquery_type", "load_batches", "write_client"]

REQUEST_BYTES = 8 * 1024 * 1024
"""Arrow bytes per AppendRows request: BigQuery refuses requests over 10 MB."""
CALL_TIMEOUT_S = 120.0
"""The bound of one Storage Write call (creating, finalizing, committing the stream)."""
_PART = re.compile(r"`((?:[^`\\]|\\.)*)`|([^.`]+)")
_SCALAR = {"INT64": "int64", "FLOAT64": "float64", "BOOL": "bool_", "STRING": "string", "BYTES": "binary"}
_SCALAR |= {"DATE": "date32", "JSON": "string", "INTEGER": "int64", "FLOAT": "float64", "BOOLEAN": "bool_"}


def bigquery_type(field: pa.Field) -> str:
    """The BigQuery type ``create`` gives an Arrow column (the table in docs/loading.md)."""
    import pyarrow as pa

    t, types = field.type, pa.types
    if types.is_dictionary(t):
        return bigquery_type(field.with_type(t.value_type))
    if types.is_list(t) or types.is_large_list(t):
        return f"ARRAY<{bigquery_type(t.value_field)}>"
    if types.is_struct(t):
        return f"STRUCT<{', '.join(f'`{f.name}` {bigquery_type(f)}' for f in t)}>"
    if types.is_decimal(t):
        fits = t.scale <= 9 and t.precision - t.scale <= 29
        return "NUMERIC" if fits else "BIGNUMERIC"
    if types.is_timestamp(t):
        return "TIMESTAMP" if t.tz else "DATETIME"
    named = [
        (types.is_integer, "INT64"),
        (types.is_floating, "FLOAT64"),
        (types.is_boolean, "BOOL"),
        (types.is_date, "DATE"),
        (types.is_time, "TIME"),
        (lambda x: types.is_string(x) or types.is_large_string(x), "STRING"),
        (lambda x: types.is_binary(x) or types.is_large_binary(x), "BYTES"),
    ]
    for test, name in named:
        if test(t):
            return name
    raise ConfigError(f"bigquery: column {field.name!r} has Arrow type {t}, which load_arrow cannot map")


def arrow_type(kind: str, given: pa.DataType) -> pa.DataType:
    """The Arrow type the Storage Write API takes for a column of BigQuery type ``kind``."""
    import pyarrow as pa

    if kind in _SCALAR:
        return getattr(pa, _SCALAR[kind])()
    simple = {
        "NUMERIC": pa.decimal128(38, 9),
        "BIGNUMERIC": pa.decimal256(76, 38),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
        "DATETIME": pa.timestamp("us"),
        "TIME": pa.time64("us"),
    }
    return simple.get(kind.split("<")[0].split("(")[0].strip(), given)  # arrays, structs: as given


def load_batches(
    plugin: BigQueryEngine,
    connection: Connection,
    context: QueryContext,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    mode: str,
) -> None:
    """The ``load_batches`` hook: create the table where ``mode`` says, then stream or load.

    ``replace`` loads into a staging table of its own and swaps it in with one
    ``CREATE OR REPLACE TABLE ... AS SELECT`` job, so a failed replace leaves the table as it was;
    a failed ``create`` drops the table it made."""
    import pyarrow as pa

    project, dataset, name = _table_parts(plugin, table)
    if mode == "append":
        state = context.state(BigQueryQuery)
        found = wait(state, lambda: plugin.client.get_table(f"{project}.{dataset}.{name}"))
        kinds = {
            f.name: f"ARRAY<{f.field_type}>" if f.mode == "REPEATED" else f.field_type for f in found.schema
        }
    else:
        kinds = {f.name: bigquery_type(f) for f in schema}
        if mode == "replace":
            name = f"{name}__floe_load_{uuid.uuid4().hex[:12]}"
        made = _new_table(f"{project}.{dataset}.{name}", schema)
        # tables.insert, not a DDL job: committing a stream into a DDL-made table took 3x as long
        wait(context.state(BigQueryQuery), lambda: plugin.client.create_table(made))
    # in the table's column order: a Parquet load job matches columns by position on the emulator
    order = {column: n for n, column in enumerate(kinds)}
    fields = sorted(schema, key=lambda f: order.get(f.name, len(order)))
    target = pa.schema([pa.field(f.name, arrow_type(kinds.get(f.name, ""), f.type)) for f in fields])
    cast = map(_Caster(plugin, context, table, target, kinds), batches)
    client, table_id = plugin.write_client, f"{project}.{dataset}.{name}"
    try:
        if client is None:
            _load_job(plugin, context, table_id, target, cast)
        else:
            _stream(client, context, f"projects/{project}/datasets/{dataset}/tables/{name}", target, cast)
        if mode == "replace":
            swap = f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM `{table_id}`"
            run_statement(connection, context, swap).close()
    except BaseException:
        if mode == "create":  # the table this load made goes with it
            with contextlib.suppress(Exception):
                plugin.client.delete_table(table_id, timeout=CALL_TIMEOUT_S)
        raise
    finally:
        if mode == "replace":
            with contextlib.suppress(Exception):
                plugin.client.delete_table(table_id, not_found_ok=True, timeout=CALL_TIMEOUT_S)


def _new_table(table_id: str, schema: pa.Schema) -> Any:
    """The table resource ``create`` makes: the columns of :func:`bigquery_type`."""
    import pyarrow as pa
    from google.cloud import bigquery

    def column(field: pa.Field) -> bigquery.SchemaField:
        t = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            inner = column(t.value_field.with_name(field.name))
            return bigquery.SchemaField(field.name, inner.field_type, mode="REPEATED", fields=inner.fields)
        if pa.types.is_struct(t):
            return bigquery.SchemaField(field.name, "RECORD", fields=[column(f) for f in t])
        return bigquery.SchemaField(field.name, bigquery_type(field))

    return bigquery.Table(table_id, schema=[column(f) for f in schema])


def _table_parts(plugin: BigQueryEngine, table: str) -> tuple[str, str, str]:
    parts = [quoted.replace("\\`", "`") if quoted else bare for quoted, bare in _PART.findall(table)]
    config = plugin.config
    if len(parts) == 1 and config.dataset is None:
        raise ConfigError(
            f"bigquery: load into {table}: name its dataset (dataset.table) or give one in the URL"
        )
    padded = [config.project, config.dataset or "", *parts][-3:]
    return padded[0], padded[1], padded[2]


class _Caster:
    """Each batch in the table's Arrow types; a value that does not fit names its column."""

    def __init__(
        self,
        plugin: BigQueryEngine,
        context: QueryContext,
        table: str,
        target: pa.Schema,
        kinds: dict[str, str],
    ) -> None:
        self.plugin, self.context, self.table = plugin, context, table
        self._target, self._kinds = target, kinds

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        import pyarrow as pa

        if batch.schema.equals(self._target):
            return batch
        columns = []
        for field in self._target:
            column = batch.column(field.name)
            try:
                columns.append(column.cast(field.type) if column.type != field.type else column)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                kind = self._kinds.get(field.name, str(field.type))
                raise QueryError(  # never the value: Arrow's message quotes it
                    f"bigquery: load into {self.table}: column {field.name} cannot take a value "
                    f"(Arrow {column.type} into BigQuery {kind})",
                    engine="bigquery",
                    query_id=self.context.query_id,
                    statement=self.context.summary,
                ) from self.plugin.driver_cause(exc)
        return pa.RecordBatch.from_arrays(columns, schema=self._target)


def _pieces(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """The batch in slices of at most REQUEST_BYTES (one AppendRows request each)."""
    rows = max(1, batch.num_rows * REQUEST_BYTES // max(1, batch.nbytes))
    for offset in range(0, batch.num_rows, rows):
        yield batch.slice(offset, rows)


def _stream(
    client: BigQueryWriteClient,
    context: QueryContext,
    parent: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
) -> None:
    """One PENDING stream: append every batch, check each answer, finalize, commit once."""
    from google.cloud.bigquery_storage_v1 import types

    state = context.state(BigQueryQuery)
    pending = types.WriteStream(type_=types.WriteStream.Type.PENDING)
    stream = wait(
        state, lambda: client.create_write_stream(parent=parent, write_stream=pending, timeout=CALL_TIMEOUT_S)
    )
    source_error: list[BaseException] = []
    ended = threading.Event()  # the load gave up (Ctrl-C, a stop): pull no further batch
    writer_schema = types.ArrowSchema(serialized_schema=schema.serialize().to_pybytes())

    def requests() -> Iterator[types.AppendRowsRequest]:
        offset = 0
        try:  # pulled by gRPC's thread: the source's error is kept for the load's own thread
            for batch in batches:
                if ended.is_set():
                    return
                for piece in _pieces(batch):
                    rows = types.ArrowRecordBatch(
                        serialized_record_batch=piece.serialize().to_pybytes(), row_count=piece.num_rows
                    )
                    data = types.AppendRowsRequest.ArrowData(rows=rows)
                    if offset == 0:
                        data.writer_schema = writer_schema
                    # the stream on every request: the emulator does not keep it from the first
                    yield types.AppendRowsRequest(write_stream=stream.name, offset=offset, arrow_rows=data)
                    offset += piece.num_rows
        except BaseException as exc:
            source_error.append(exc)

    metadata = (("x-goog-request-params", f"write_stream={stream.name}"),)
    try:
        answers = wait(state, lambda: list(client.append_rows(requests(), metadata=metadata)))
    finally:
        ended.set()
    if source_error:
        raise source_error[0]
    _check(answers, context, parent)
    with state.lock:
        if state.stopped:  # stopped after the last batch: never commit
            raise JobAbandoned(f"load {context.query_id} was stopped before its commit")
    wait(state, lambda: client.finalize_write_stream(name=stream.name, timeout=CALL_TIMEOUT_S))
    commit = types.BatchCommitWriteStreamsRequest(parent=parent, write_streams=[stream.name])
    # not abandoned once sent: the commit is the point after which the rows are the table's
    answer = client.batch_commit_write_streams(request=commit, timeout=CALL_TIMEOUT_S)
    if answer.stream_errors:
        raise context.error(
            "bigquery",
            f"bigquery: load into {parent}: the commit was refused: {answer.stream_errors[0].error_message}",
        )


def _check(answers: list[Any], context: QueryContext, parent: str) -> None:
    """A ``QueryError`` for an AppendRows answer that refused rows."""
    refused = [a for a in answers if a.error.code or a.row_errors]
    if refused:
        detail = refused[0].error.message or f"{len(refused[0].row_errors)} rows refused"
        raise context.error(
            "bigquery",
            f"bigquery: load into {parent}: the Storage Write API refused a batch: {detail}",
        )


def _load_job(
    plugin: BigQueryEngine,
    context: QueryContext,
    table_id: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
) -> None:
    """One Parquet file, one ``WRITE_APPEND`` load job (cancelled by the cancel hook)."""
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    state = context.state(BigQueryQuery)
    with tempfile.TemporaryFile(prefix="floe-load-", suffix=".parquet") as file:
        with pq.ParquetWriter(file, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        file.seek(0)
        config = bigquery.LoadJobConfig(source_format="PARQUET", write_disposition="WRITE_APPEND")
        config.labels = plugin.job_config(context).labels
        job_id = new_job_id(context.query_id)
        with state.lock:
            if state.stopped:
                raise JobAbandoned(f"load {context.query_id} was stopped before its job was inserted")
            state.job_id = job_id
        upload = plugin.client.load_table_from_file
        job = wait(state, lambda: upload(file, table_id, job_id=job_id, job_config=config))
        wait(state, job.result)


def write_client(plugin: BigQueryEngine) -> BigQueryWriteClient | None:
    """The Storage Write client: ``storage_endpoint`` (``http://`` for plain text, an emulator),
    else BigQuery's own; None with an ``api_endpoint`` but no ``storage_endpoint``."""
    config = plugin.config
    endpoint = config.storage_endpoint
    if endpoint is None and config.api_endpoint is not None:
        return None
    from google.api_core.client_options import ClientOptions
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
    from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
        BigQueryWriteGrpcTransport,
    )

    if endpoint is not None and endpoint.startswith("http://"):
        import grpc

        channel = grpc.insecure_channel(endpoint.removeprefix("http://"))
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))  # type: ignore[no-untyped-call]
    options: Any = ClientOptions(api_endpoint=endpoint.removeprefix("https://")) if endpoint else None
    return BigQueryWriteClient(credentials=plugin.credentials(), client_options=options)  # type: ignore[no-untyped-call]
