"""DuckDB bulk load: the Arrow stream registered as a view, and one statement reading it.

DuckDB scans the registered ``RecordBatchReader`` batch by batch (memory stays flat for a reader
of any length) and maps Arrow types to its own (decimals, timestamps with time zone, lists,
structs: docs/loading.md). The statement runs in the load's transaction on the pooled connection,
so a failure, the deadline or a cancel (``interrupt()``) leaves the table as it was.

Private to :mod:`floe_compute.engines.duckdb`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection

    from floe_compute.context import QueryContext
    from floe_compute.plugin import ComputePlugin

__all__ = ["load_batches"]


def load_batches(
    plugin: ComputePlugin,
    connection: Connection,
    context: QueryContext,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    mode: str,
) -> None:
    import pyarrow as pa

    quote = connection.dialect.identifier_preparer.quote_identifier
    view = f"floe_load_{uuid.uuid4().hex}"
    columns = ", ".join(quote(n) for n in schema.names)
    statement = {
        "append": f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {view}",
        "create": f"CREATE TABLE {table} AS SELECT {columns} FROM {view}",
        "replace": f"CREATE OR REPLACE TABLE {table} AS SELECT {columns} FROM {view}",
    }[mode]
    dbapi = context.dbapi_connection
    cursor = context.cursor = dbapi.cursor()  # duckdb-engine's wrapper: register() reaches DuckDB
    cursor.register(view, pa.RecordBatchReader.from_batches(schema, batches))
    try:
        cursor.execute(statement)  # marks the connection busy: cancel() reports the interrupt
    except (duckdb.ConversionException, duckdb.ConstraintException) as exc:
        raise context.error(
            "duckdb",
            f"duckdb: load into {table}: a value cannot be stored in its column "
            f"({type(exc).__name__}; columns {', '.join(schema.names)})",
        ) from plugin.driver_cause(exc)
    finally:
        dbapi.busy = False
        cursor.unregister(view)
