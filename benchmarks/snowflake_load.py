"""``make bench``, Snowflake load (run by ``snowflake_bench.py``): ``plugin.load_arrow`` against the
same native path written by hand with the raw connector, same run, same emulator.

By hand: the Arrow table written as one Parquet file (pyarrow's defaults), a temporary stage,
``PUT`` (no compression: Parquet is compressed already), one ``COPY INTO ... MATCH_BY_COLUMN_NAME``,
the stage dropped, COMMIT. The plugin does the same through its query machinery (the load's
deadline, tags, cancel bookkeeping, a column check against the table). Each run loads a freshly
created table; repetitions alternate; the best wall time of each is kept.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from arrow_load import sample

LOAD_RATIO_MAX = 1.10
DDL = "CREATE TABLE {t} (a NUMBER(38, 0), b NUMBER(38, 0), t VARCHAR, d NUMBER(12, 2), ts TIMESTAMP_NTZ)"


def by_hand(connection: Any, table: str, data: Any) -> None:
    """Write Parquet, PUT it to a stage, COPY INTO, drop the stage: the raw connector only."""
    import pyarrow.parquet as pq
    import snowflake.connector

    stage = f"BENCH_{uuid.uuid4().hex.upper()}"
    cursor = connection.cursor()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as directory:
        path = Path(directory) / "part-00000.parquet"
        pq.write_table(data, path)
        cursor.execute(f"CREATE TEMPORARY STAGE {stage}")
        cursor.execute(f"PUT 'file://{path.as_posix()}' @{stage} AUTO_COMPRESS = FALSE")
    cursor.execute(
        f"COPY INTO {table} FROM @{stage} FILE_FORMAT = (TYPE = PARQUET) "
        "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE ON_ERROR = ABORT_STATEMENT"
    )
    with contextlib.suppress(snowflake.connector.ProgrammingError):  # fakesnow cannot parse it;
        cursor.execute(f"DROP STAGE IF EXISTS {stage}")  # the plugin ignores the failure too
    connection.commit()
    cursor.close()


def measure(server: Any, database: str, rows: int, repeat: int) -> dict[str, float]:
    """Best wall time of the plugin's load and of the load by hand, the repetitions interleaved."""
    import snowflake.connector

    from floe_compute import create_plugin

    data = sample(rows)
    raw = snowflake.connector.connect(
        user=server.user, password=server.password, account=server.account, database=database,
        schema="bench", **server.endpoint,
    )  # fmt: skip
    times = {"by_hand": float("inf"), "load_arrow": float("inf")}
    with create_plugin(server.plugin_url(database, "bench"), **server.endpoint) as plugin:
        plugin.execute("SELECT 1").close()  # the session exists before anything is timed
        try:
            for r in range(repeat):
                for name in times:
                    table = f"load_{name}_{r}"
                    raw.cursor().execute(DDL.format(t=table))
                    started = time.perf_counter()
                    if name == "by_hand":
                        by_hand(raw, table, data)
                    else:
                        plugin.load_arrow(table, data)
                    times[name] = min(times[name], time.perf_counter() - started)
                    [(count,)] = raw.cursor().execute(f"SELECT COUNT(*) FROM {table}").fetchall()
                    assert count == rows, (name, count, rows)
                    raw.cursor().execute(f"DROP TABLE {table}")
        finally:
            raw.close()
    return times
