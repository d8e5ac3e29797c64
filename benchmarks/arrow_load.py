"""Arrow in: ``load_arrow`` against the native path written by hand: ``python benchmarks/arrow_load.py``.

Same run, same server, the same Arrow table (``--rows``, default 1M rows of int, int, text,
decimal, timestamp), best of ``--repeat`` interleaved runs, each into a freshly created table:

* PostgreSQL (a throwaway cluster, ``fixtures/postgres.py``): ``plugin.load_arrow`` (COPY, CSV
  written by pyarrow), ADBC's ``adbc_ingest``, and the two COPY formats written by hand with
  psycopg (pyarrow CSV, binary ``write_row``): the measurement the CSV path was chosen by.
  Target: ``load_arrow`` at least as fast as ADBC.
* DuckDB (in memory): ``plugin.load_arrow(mode="create")`` against ``CREATE TABLE AS SELECT *
  FROM arrow_table`` on a raw connection. Target: within 1.1x.
* Memory: peak RSS of a process loading ``--rss-rows`` (default 20M) rows from a reader into
  PostgreSQL, against one loading a tenth of that. Target: ratio <= 1.2.

Exits 1 when a target fails.
"""

from __future__ import annotations

import argparse
import decimal
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.postgres import PostgresServer  # noqa: E402

DDL = "CREATE TABLE {t} (a bigint, b bigint, t text, d numeric(12, 2), ts timestamp)"


def sample(rows: int) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(range(rows), pa.int64())
    return pa.table(
        {
            "a": ids,
            "b": pc.multiply(ids, 2),
            "t": pc.binary_join_element_wise("row ", pc.cast(ids, pa.string()), ""),
            "d": pa.array([decimal.Decimal(i) / 100 for i in range(rows)], pa.decimal128(12, 2)),
            "ts": pc.cast(pc.multiply(ids, 1_000_000), pa.timestamp("us")),
        }
    )


def best(
    cases: dict[str, Callable[[str], None]],
    prepare: Callable[[str], None],
    repeat: int,
    drop: Callable[[str, str], None] | None = None,
) -> dict[str, float]:
    """Best wall time of each case, the repetitions interleaved; each run loads a new table
    (dropped afterwards, untimed, where ``drop`` is given: an in-memory database keeps its size)."""
    times: dict[str, float] = {name: float("inf") for name in cases}
    for r in range(repeat):
        for n, (name, run) in enumerate(cases.items()):
            table = f"bench_{r}_{n}"
            prepare(table)
            started = time.perf_counter()
            run(table)
            times[name] = min(times[name], time.perf_counter() - started)
            if drop is not None:
                drop(name, table)
    return times


def postgres(server: PostgresServer, data: Any, repeat: int) -> dict[str, float]:
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from floe_compute import create_plugin

    raw = psycopg.connect(server.url("postgresql"))
    plugin = create_plugin(server.url(), name="bench").connect()

    def prepare(table: str) -> None:
        raw.execute(DDL.format(t=table))
        raw.commit()

    def by_hand_csv(table: str) -> None:
        options = pacsv.WriteOptions(include_header=False)
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
            for batch in data.to_batches(65536):
                sink = pa.BufferOutputStream()
                pacsv.write_csv(batch, sink, options)
                copy.write(sink.getvalue())
        raw.commit()

    def by_hand_binary(table: str) -> None:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int8", "int8", "text", "numeric", "timestamp"])
            for batch in data.to_batches(65536):
                for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                    copy.write_row(row)
        raw.commit()

    cases: dict[str, Callable[[str], None]] = {
        "load_arrow": lambda table: plugin.load_arrow(table, data) and None,
        "copy_csv_by_hand": by_hand_csv,
        "copy_binary_by_hand": by_hand_binary,
    }
    try:
        import adbc_driver_postgresql.dbapi as adbc

        ingest = adbc.connect(server.url("postgresql"))

        def adbc_ingest(table: str) -> None:
            with ingest.cursor() as cursor:
                cursor.adbc_ingest(table, data, mode="append")
            ingest.commit()

        cases["adbc_ingest"] = adbc_ingest
    except ImportError:
        print("  adbc-driver-postgresql is not installed: no ADBC comparison")
    times = best(cases, prepare, repeat)
    plugin.disconnect()
    return times


def duckdb_case(data: Any, repeat: int) -> dict[str, float]:
    import duckdb

    from floe_compute import create_plugin

    raw = duckdb.connect()
    plugin = create_plugin("duckdb:///:memory:").connect()
    raw.register("arrow_table", data)
    cases: dict[str, Callable[[str], None]] = {
        "load_arrow": lambda table: plugin.load_arrow(table, data, mode="create") and None,
        "ctas_by_hand": lambda table: (
            raw.execute(f"CREATE TABLE {table} AS SELECT * FROM arrow_table") and None
        ),
    }

    def drop(case: str, table: str) -> None:
        if case == "load_arrow":
            plugin.execute(f"DROP TABLE {table}").close()
        else:
            raw.execute(f"DROP TABLE {table}")

    times = best(cases, lambda table: None, max(repeat, 7), drop)  # cheap: more runs against the noise
    plugin.disconnect()
    return times


def rss_child(url: str, rows: int) -> None:
    """Load ``rows`` rows from a reader (never all in memory) and print the peak RSS in MB."""
    import pyarrow as pa

    from floe_compute import create_plugin

    def batches() -> Any:
        for start in range(0, rows, 100_000):
            yield sample(min(100_000, rows - start)).to_batches()[0]

    schema = sample(1).schema
    with create_plugin(url) as plugin:
        plugin.load_arrow(f"rss_{rows}", pa.RecordBatchReader.from_batches(schema, batches()), mode="create")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_rss(url: str, rows: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", url, str(rows)], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rss-rows", type=int, default=20_000_000)
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return 0
    data = sample(args.rows)
    failures = []
    print(f"arrow load: {args.rows} rows (int, int, text, decimal, timestamp), best of {args.repeat}")
    with PostgresServer() as server:
        server.start()
        pg = postgres(server, data, args.repeat)
        for name, seconds in pg.items():
            print(f"  postgresql {name:20s} {seconds:7.3f} s  {args.rows / seconds:>12,.0f} rows/s")
        if "adbc_ingest" in pg and pg["load_arrow"] > pg["adbc_ingest"]:
            failures.append(
                f"postgresql load_arrow {pg['load_arrow'] / pg['adbc_ingest']:.2f}x ADBC's adbc_ingest"
            )
        small, large = args.rss_rows // 10, args.rss_rows
        rss = {rows: peak_rss(server.url(), rows) for rows in (small, large)}
        ratio = rss[large] / rss[small]
        sizes = f"{small:,} rows {rss[small]:.0f} MB, {large:,} rows {rss[large]:.0f} MB"
        print(f"  postgresql peak RSS      {sizes}: {ratio:.2f}x")
        if ratio > 1.2:
            failures.append(f"peak RSS grows {ratio:.2f}x from {small:,} to {large:,} rows")
    dd = duckdb_case(data, args.repeat)
    for name, seconds in dd.items():
        print(f"  duckdb     {name:20s} {seconds:7.3f} s  {args.rows / seconds:>12,.0f} rows/s")
    if dd["load_arrow"] > 1.1 * dd["ctas_by_hand"]:
        failures.append(
            f"duckdb load_arrow {dd['load_arrow'] / dd['ctas_by_hand']:.2f}x CREATE TABLE AS by hand"
        )
    for failure in failures:
        print("  FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
