"""Spark Connect bulk load: ``createDataFrame`` from Arrow, written with ``saveAsTable``.

The batches are gathered into chunks of about ``CHUNK_ROWS`` rows (memory holds one chunk), and
each chunk is one ``createDataFrame(arrow_table).write.mode("append").saveAsTable(table)``, which
matches columns by name. ``create`` and ``replace`` make the table first, with the same types as
the Thrift engines (:func:`~floe_compute.engines._spark_load.spark_type`). Not atomic: Spark
Connect has no transactions, so a load that fails or is stopped keeps the chunks already written
(each one whole or not at all). Types are Spark's to check: it casts each column to the table's
type as it writes, and refuses one it cannot cast safely (a ``QueryError`` naming the column).
Each write carries the load's operation tag, so the deadline and ``cancel_query()`` interrupt
the one in flight; the core stops the stream before the next.

Private to :mod:`floe_compute.engines.spark_connect`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from floe_compute.context import StatementStopped
from floe_compute.engines import _spark_connect_dbapi as dbapi
from floe_compute.engines._spark_connect_dialect import SparkConnectQuery
from floe_compute.engines._spark_load import spark_type
from floe_compute.load import run_statement

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection

    from floe_compute.context import QueryContext
    from floe_compute.plugin import ComputePlugin

__all__ = ["CHUNK_ROWS", "load_batches"]

CHUNK_ROWS = 1_000_000
"""Rows per ``createDataFrame``: one local relation (sent as a cached artifact when large) and
one write job each."""


def load_batches(
    plugin: ComputePlugin,
    connection: Connection,
    context: QueryContext,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    mode: str,
) -> None:
    """The ``load_batches`` hook: create the table where ``mode`` says, then one tagged write
    per chunk."""
    quote = connection.dialect.identifier_preparer.quote_identifier
    if mode in ("create", "replace"):
        if mode == "replace":
            run_statement(connection, context, f"DROP TABLE IF EXISTS {table}").close()
        definition = ", ".join(f"{quote(f.name)} {spark_type(f)}" for f in schema)
        run_statement(connection, context, f"CREATE TABLE {table} ({definition})").close()
    session = context.dbapi_connection
    assert isinstance(session, dbapi.Connection)
    for chunk in _chunks(batches, schema):
        # Spark casts each column to the table's type as it writes (ANSI store assignment): a
        # column it cannot safely cast is an error naming the column, never a value
        _write(session, context, table, chunk)


def _chunks(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The batches gathered into record batches of about CHUNK_ROWS rows."""
    import pyarrow as pa

    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        held.append(batch)
        rows += batch.num_rows
        if rows >= CHUNK_ROWS:
            yield pa.Table.from_batches(held, schema).combine_chunks().to_batches()[0]
            held, rows = [], 0
    if rows:
        yield pa.Table.from_batches(held, schema).combine_chunks().to_batches()[0]


def _write(session: dbapi.Connection, context: QueryContext, table: str, chunk: pa.RecordBatch) -> None:
    """One ``saveAsTable`` append of the chunk under the load's operation and job tags."""
    import pyarrow as pa

    state = context.state(SparkConnectQuery)
    with state.lock:  # a cancel from now on interrupts the load's tag
        if state.cancelled or context.handle.stopped:
            raise StatementStopped
        state.connection = session
        tag = state.operation_tag = f"floe-op-{context.query_id}"
    spark = session.session
    added = [tag, *(t for t in state.tags if t)]
    for each in added:  # pyspark's tags are the calling thread's
        spark.addTag(each)
    try:
        frame = spark.createDataFrame(pa.Table.from_batches([chunk]))
        frame.write.mode("append").saveAsTable(table)
    except Exception as exc:
        raise dbapi.to_dbapi_error(exc) from exc
    finally:
        for each in added:
            spark.removeTag(each)
