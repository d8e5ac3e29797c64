"""Snowflake bulk load: Parquet files ``PUT`` to a temporary stage, then one ``COPY INTO``.

pyarrow writes the batches as Parquet files of about ``FILE_ROWS`` rows in a temporary directory;
each is ``PUT`` to a stage of the load's own as it is written, and one ``COPY INTO`` from that
stage (``MATCH_BY_COLUMN_NAME``, ``ON_ERROR = ABORT_STATEMENT``) makes the load all or nothing.
The stage and the local files are removed on every path. Every statement runs as the load's own,
so the deadline and ``cancel_query()`` abort the one in flight (Snowflake's ``abort-request``), and
a request answered HTTP 5xx is sent again only until the load's deadline (the connector alone
retried for minutes); the stage's ``DROP`` goes out even after a stop, once, outside the load.

Private to :mod:`floe_compute.engines.snowflake`.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc

from floe_compute.engines._snowflake_dialect import untrusted
from floe_compute.errors import ConfigError, QueryError
from floe_compute.load import run_statement

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection

    from floe_compute.context import QueryContext
    from floe_compute.plugin import ComputePlugin

__all__ = ["load_batches", "snowflake_type"]

FILE_ROWS = 1_000_000
"""Rows per Parquet file: Snowflake loads files in parallel, each best at 100-250 MB compressed."""


def snowflake_type(field: pa.Field) -> str:
    """The Snowflake type ``create`` gives an Arrow column (the table in docs/loading.md)."""
    import pyarrow as pa

    t, types = field.type, pa.types
    if types.is_dictionary(t):
        return snowflake_type(field.with_type(t.value_type))
    if types.is_integer(t):
        return "NUMBER(38, 0)"
    if types.is_decimal(t):
        return f"NUMBER({t.precision}, {t.scale})"
    if types.is_timestamp(t):
        return "TIMESTAMP_TZ" if t.tz else "TIMESTAMP_NTZ"
    named = [
        (types.is_boolean, "BOOLEAN"),
        (types.is_floating, "FLOAT"),
        (types.is_date, "DATE"),
        (types.is_time, "TIME"),
        (lambda x: types.is_string(x) or types.is_large_string(x), "VARCHAR"),
        (lambda x: types.is_binary(x) or types.is_large_binary(x), "BINARY"),
        (lambda x: types.is_list(x) or types.is_large_list(x), "ARRAY"),
        (types.is_struct, "OBJECT"),
    ]
    for test, name in named:
        if test(t):
            return name
    raise ConfigError(f"snowflake: column {field.name!r} has Arrow type {t}, which load_arrow cannot map")


def load_batches(
    plugin: ComputePlugin,
    connection: Connection,
    context: QueryContext,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    mode: str,
) -> None:
    """The ``load_batches`` hook: create the table where ``mode`` says, stage Parquet, COPY once."""
    preparer = connection.dialect.identifier_preparer

    def quote(name: str) -> str:  # a lower-case name as Snowflake stores it unquoted (upper case)
        return str(preparer.quote_identifier(name.upper() if name == name.lower() else name))

    if mode in ("create", "replace"):
        definition = ", ".join(f"{quote(f.name)} {snowflake_type(f)}" for f in schema)
        verb = "CREATE OR REPLACE TABLE" if mode == "replace" else "CREATE TABLE"
        run_statement(connection, context, f"{verb} {table} ({definition})").close()
    stage = f"FLOE_LOAD_{uuid.uuid4().hex.upper()}"
    with tempfile.TemporaryDirectory(prefix="floe-load-") as directory:
        run_statement(connection, context, f"CREATE TEMPORARY STAGE {stage}").close()
        try:
            files = _stage_files(connection, context, stage, schema, batches, Path(directory))
            if files:
                # the stage is the load's own: it holds exactly these files (fakesnow refuses FILES = (...))
                copy = (
                    f"COPY INTO {table} FROM @{stage} FILE_FORMAT = (TYPE = PARQUET) "
                    "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE ON_ERROR = ABORT_STATEMENT"
                )
                try:
                    run_statement(connection, context, copy).close()
                except sa_exc.DBAPIError as exc:
                    refused = _value_error(exc, table, context)
                    if refused is None:
                        raise
                    raise refused from plugin.driver_cause(exc.orig)
        finally:
            _drop_stage(connection, context, stage)


def _drop_stage(connection: Connection, context: QueryContext, stage: str) -> None:
    """Drop the load's stage, also after a deadline or a cancel (when the load's own statements no
    longer start: then sent once, directly). Temporary, it also ends with the session: failures
    are ignored, and a session whose abort failed (it is discarded) is left alone."""
    drop = f"DROP STAGE IF EXISTS {stage}"
    try:
        run_statement(connection, context, drop).close()
        return
    except Exception:
        if not context.handle.stopped:
            return
    context.handle.settle()  # waits for an abort-request on its way; a stopped load stays stopped
    if context.dbapi_connection in untrusted:
        return
    with contextlib.suppress(Exception), contextlib.closing(context.dbapi_connection.cursor()) as cursor:
        cursor.execute(drop, _no_retry=True)


_SOURCE_COLUMN = re.compile(r'column "[^"]*"\["?([^":\]]+)|source column (\S+)')


def _value_error(exc: sa_exc.DBAPIError, table: str, context: QueryContext) -> QueryError | None:
    """A refused value (SQLSTATE class 22): the column it was in, never the value."""
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    if not sqlstate.startswith("22"):
        return None
    found = _SOURCE_COLUMN.search(str(exc.orig))
    column = next((g for g in found.groups() if g), None) if found else None
    what = f"column {column}" if column else "a column"
    code = f"Snowflake error {getattr(exc.orig, 'errno', '')}, SQLSTATE {sqlstate}"
    return context.error(
        "snowflake",
        f"snowflake: load into {table}: {what} cannot take a value ({code})",
    )


def _stage_files(
    connection: Connection,
    context: QueryContext,
    stage: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    directory: Path,
) -> list[str]:
    """Write the batches as Parquet files of about FILE_ROWS rows and PUT each; their names."""
    import pyarrow.parquet as pq

    files: list[str] = []
    writer: pq.ParquetWriter | None = None
    rows = 0

    def put() -> None:
        nonlocal writer, rows
        assert writer is not None
        writer.close()
        path = directory / files[-1]
        uri = path.as_posix()
        run_statement(connection, context, f"PUT 'file://{uri}' @{stage} AUTO_COMPRESS = FALSE").close()
        path.unlink()
        writer, rows = None, 0

    try:
        for batch in batches:
            if writer is None:
                files.append(f"part-{len(files):05d}.parquet")
                # no column statistics: they serve readers that skip row groups; COPY reads every
                # row of a file read once, and computing them took a third of the writing time
                writer = pq.ParquetWriter(directory / files[-1], schema, write_statistics=False)
            writer.write_batch(batch)
            rows += batch.num_rows
            if rows >= FILE_ROWS:
                put()
        if writer is not None:
            put()
    finally:
        if writer is not None:  # stopped midway: the file is removed with its directory
            writer.close()
    return files
