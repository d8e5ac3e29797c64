"""Spark Connect against pyspark's own client and the Thrift engine: ``python benchmarks/spark_connect.py``
(part of ``make bench``).

Both servers are the Spark 4.3 build of ``.tools/spark`` on ``local[2]``, one at a time (two cores):

1. Thrift: the Spark engine's ``arrow_batches()`` on ``SELECT id, id * 2, cast(id AS string) FROM
   range(3000000)`` (best of ``--repeat``).
2. Connect: the same query through pyspark's own ``toArrow()`` and through this engine's
   ``arrow_batches()``, interleaved, best of ``--repeat``. Targets: the engine within 1.1x of
   ``toArrow()``, and at least 4x faster than the Thrift engine.
3. load: ``load_arrow`` of ``--load-rows`` rows against ``createDataFrame(arrow)`` +
   ``saveAsTable`` by hand with pyspark, interleaved (``benchmarks/spark_load.py``). Target: 1.1x.
4. memory: a fresh process streams ``--memory-rows`` (50 million) rows as Arrow batches; its peak
   RSS at the end against its peak after the first tenth. Target: within 1.2x.

Skipped with a message when Java or the pyspark tool environment is missing; exits 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.spark import SparkNotInstalledError, SparkThriftServer  # noqa: E402
from fixtures.spark_connect import SparkConnectCluster  # noqa: E402
from spark_load import connect_load  # noqa: E402

from floe_compute import ComputePlugin, create_plugin  # noqa: E402

QUERY = "SELECT id, id * 2, cast(id AS string) FROM range({rows})"
TO_ARROW_RATIO_MAX = 1.10
THRIFT_SPEEDUP_MIN = 4.0
RSS_RATIO_MAX = 1.20


def best_of(cases: dict[str, Callable[[], int]], rows: int, repeat: int) -> dict[str, float]:
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):  # interleaved: a burst of load elsewhere hits every case alike
        for name, case in cases.items():
            started = time.perf_counter()
            seen = case()
            best[name] = min(best[name], time.perf_counter() - started)
            assert seen == rows, f"{name} read {seen} rows, expected {rows}"
    return best


PLUGINS: list[ComputePlugin] = []


def plugin_arrow(url: str, sql: str) -> Callable[[], int]:
    plugin = create_plugin(url, pool={"size": 1})
    PLUGINS.append(plugin)  # closed before its server stops

    def run() -> int:
        with plugin.execute(sql) as result:
            return sum(batch.num_rows for batch in result.arrow_batches())

    return run


def thrift(rows: int, repeat: int) -> float:
    with SparkThriftServer() as server:
        run = plugin_arrow(server.url(), QUERY.format(rows=rows))
        run()  # warm-up: the first query compiles and plans for seconds
        try:
            return best_of({"thrift": run}, rows, repeat)["thrift"]
        finally:
            PLUGINS.pop().disconnect()


def connect(server: SparkConnectCluster, rows: int, repeat: int) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pyspark.sql.connect.session import SparkSession

    sql = QUERY.format(rows=rows)
    spark = SparkSession.builder.remote(server.url()).create()

    def to_arrow() -> int:
        return int(spark.sql(sql).toArrow().num_rows)

    cases = {"pyspark toArrow()": to_arrow, "plugin arrow_batches()": plugin_arrow(server.url(), sql)}
    for case in cases.values():
        case()  # warm-up
    try:
        return best_of(cases, rows, repeat)
    finally:
        spark.stop()
        PLUGINS.pop().disconnect()


MEMORY_SCRIPT = """
import resource, sys, time
from floe_compute import create_plugin
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
url, rows = sys.argv[1], int(sys.argv[2])
started, seen, early = time.perf_counter(), 0, None
with create_plugin(url) as plugin:
    with plugin.execute(f"SELECT id FROM range(0, {rows}, 1, {max(2, rows // 1_000_000)})") as result:
        for batch in result.arrow_batches():
            seen += batch.num_rows
            if early is None and seen >= rows // 10:
                early = rss()
print(seen, early, rss(), time.perf_counter() - started)
"""


def memory(server: SparkConnectCluster, rows: int) -> bool:
    script = ROOT / ".connect_memory_bench.py"  # a file: pyspark exits a ``python -c`` process
    script.write_text(textwrap.dedent(MEMORY_SCRIPT))
    try:
        out = subprocess.run(
            [sys.executable, str(script), server.url(), str(rows)], capture_output=True, text=True, check=True
        )
    finally:
        script.unlink()
    seen, early, peak, wall = out.stdout.split()
    ratio = float(peak) / float(early)
    ok = int(seen) == rows and ratio <= RSS_RATIO_MAX
    print(f"memory: {rows:,} rows (id) as Arrow batches in a fresh process, {float(wall):.0f} s")
    print(
        f"  {'PASS' if ok else 'FAIL'} peak RSS after {rows // 10:,} rows {float(early):.0f} MiB, "
        f"after {int(seen):,} rows {float(peak):.0f} MiB: {ratio:.2f}x (<= {RSS_RATIO_MAX}x)"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, default=50_000_000)
    parser.add_argument("--load-rows", type=int, default=1_000_000, help="rows load_arrow writes (0: skip)")
    args = parser.parse_args()
    try:
        server = SparkConnectCluster(workers=0, local="local[2]")
    except SparkNotInstalledError as exc:
        print(f"spark-connect: skipped ({exc})")
        return 0
    print("spark-connect: the Thrift engine on a local Spark Thrift Server...", flush=True)
    thrift_s = thrift(args.rows, args.repeat)
    print("spark-connect: a local Spark Connect server...", flush=True)
    with server:
        best = connect(server, args.rows, args.repeat)
        ok = memory(server, args.memory_rows) if args.memory_rows else True
        if args.load_rows:
            ok = connect_load(server.url(), args.load_rows, args.repeat) and ok
    best["thrift engine arrow_batches()"] = thrift_s
    print(
        f"throughput: {args.rows:,} rows of (id, id * 2, string), best of {args.repeat}, Spark 4.3, local[2]"
    )
    for name, wall in best.items():
        print(f"  {name:<32} {wall:7.2f} s {args.rows / wall:>12,.0f} rows/s")
    plugin = best["plugin arrow_batches()"]
    ratio, speedup = plugin / best["pyspark toArrow()"], thrift_s / plugin
    ok_ratio, ok_speed = ratio <= TO_ARROW_RATIO_MAX, speedup >= THRIFT_SPEEDUP_MIN
    verdict = {True: "PASS", False: "FAIL"}
    print(f"  {verdict[ok_ratio]} plugin / pyspark toArrow(): {ratio:.2f}x (<= {TO_ARROW_RATIO_MAX}x)")
    print(f"  {verdict[ok_speed]} Thrift / Connect: {speedup:.1f}x faster (>= {THRIFT_SPEEDUP_MIN}x)")
    ok = ok and ok_ratio and ok_speed
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
