"""Loads for the Spark benchmarks (``benchmarks/spark.py``, ``benchmarks/spark_connect.py``): the
same rows (int, int, text, decimal, timestamp) through ``load_arrow`` and through the raw client.

- Thrift: ``load_arrow`` (multi-row ``INSERT`` of literals rendered by pyarrow) against PyHive's own
  parameter substitution of the same statements (``%s`` per value, rendered on the client too);
  rows/s printed, no target (the documented slow path).
- Connect: ``load_arrow`` against ``createDataFrame(arrow).write.mode("append").saveAsTable`` by
  hand with pyspark's client, same run, interleaved. Target: within 1.1x.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import time
import warnings
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from floe_compute import create_plugin

CONNECT_RATIO_MAX = 1.10
COLUMNS = "a BIGINT, b BIGINT, c STRING, d DECIMAL(12, 2), e TIMESTAMP"


def sample(rows: int) -> pa.Table:
    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    return pa.table(
        {
            "a": pa.array(range(rows), pa.int64()),
            "b": pa.array(range(0, rows * 7, 7), pa.int64()),
            "c": pa.array([f"row {i}" for i in range(rows)]),
            "d": pa.array([decimal.Decimal(i).scaleb(-2) for i in range(rows)], pa.decimal128(12, 2)),
            "e": pa.array(
                [base + datetime.timedelta(seconds=i) for i in range(rows)], pa.timestamp("us", "UTC")
            ),
        }
    )


def best_of(cases: dict[str, Callable[[], None]], repeat: int) -> dict[str, float]:
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):  # interleaved: a burst of load elsewhere hits every case alike
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def thrift_load(url: str, host: str, port: int, rows: int, repeat: int) -> bool:
    from pyhive import hive

    from floe_compute.engines._spark_load import ROWS_PER_STATEMENT
    from floe_compute.engines._spark_thrift import SparkCursor  # PyHive's, with decimal literals

    data = sample(rows)
    with (
        create_plugin(url, pool={"size": 1}) as plugin,
        contextlib.closing(hive.connect(host=host, port=port, username="bench")) as raw,
    ):
        for name in ("bench_load", "bench_load_raw"):  # both append: the same statements' work
            plugin.execute(f"DROP TABLE IF EXISTS {name}").close()
            plugin.execute(f"CREATE TABLE {name} ({COLUMNS})").close()
        cursor = SparkCursor(raw)
        py = [
            tuple(v.isoformat() if isinstance(v, datetime.datetime) else v for v in r.values())
            for r in data.to_pylist()
        ]

        def pyhive_parameters() -> None:
            for start in range(0, rows, ROWS_PER_STATEMENT):
                chunk = py[start : start + ROWS_PER_STATEMENT]
                values = ", ".join(["(%s, %s, %s, %s, CAST(%s AS TIMESTAMP))"] * len(chunk))
                cursor.execute(f"INSERT INTO bench_load_raw VALUES {values}", [v for r in chunk for v in r])

        cases = {
            "load_arrow": lambda: plugin.load_arrow("bench_load", data) and None,
            "pyhive parameters": pyhive_parameters,
        }
        best = best_of(cases, repeat)
    print(f"load (Thrift): {rows:,} rows (int, int, text, decimal, timestamp), append, best of {repeat}")
    for name, wall in best.items():
        print(f"  {name:<22} {wall:7.2f} s {rows / wall:>10,.0f} rows/s")
    ratio = best["pyhive parameters"] / best["load_arrow"]
    print(f"  PyHive's parameter substitution takes {ratio:.2f}x the time of load_arrow's literals")
    return True


def connect_load(url: str, rows: int, repeat: int) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pyspark.sql.connect.session import SparkSession

    data = sample(rows)
    spark = SparkSession.builder.remote(url).create()
    try:
        with create_plugin(url, pool={"size": 1}) as plugin:
            for name in ("bench_load", "bench_load_raw"):
                plugin.execute(f"DROP TABLE IF EXISTS {name}").close()
                plugin.execute(f"CREATE TABLE {name} ({COLUMNS})").close()

            def by_hand() -> None:
                spark.createDataFrame(data).write.mode("append").saveAsTable("bench_load_raw")

            cases: dict[str, Any] = {
                "pyspark createDataFrame": by_hand,
                "load_arrow": lambda: plugin.load_arrow("bench_load", data) and None,
            }
            for case in cases.values():
                case()  # warm-up
            best = best_of(cases, repeat)
    finally:
        spark.stop()
    print(f"load (Connect): {rows:,} rows (int, int, text, decimal, timestamp), append, best of {repeat}")
    for name, wall in best.items():
        print(f"  {name:<26} {wall:7.2f} s {rows / wall:>10,.0f} rows/s")
    ratio = best["load_arrow"] / best["pyspark createDataFrame"]
    ok = ratio <= CONNECT_RATIO_MAX
    verdict = "PASS" if ok else "FAIL"
    print(f"  {verdict} load_arrow / createDataFrame + saveAsTable: {ratio:.2f}x (<= {CONNECT_RATIO_MAX}x)")
    return ok
