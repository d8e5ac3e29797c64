"""Spark through its Thrift server: ``python benchmarks/spark.py`` (part of ``make bench``).

Starts a local Spark Thrift Server (``fixtures/spark.py``; skipped with a message when Java or the
pyspark tool environment is missing), then

1. throughput: the same ``range()`` query read with PyHive's own ``fetchmany`` loop, with the plugin
   as rows, and with the plugin as Arrow batches; interleaved, best of ``--repeat``. Target: the
   plugin's rows within 1.1x of PyHive's time. Both sessions stream (``incrementalCollect=true``,
   which the plugin sets by default) and fetch 10,000 rows per round trip.
2. timeouts: ``SELECT count(*) FROM range(10^11)`` with ``timeout=1``: how long after the deadline
   ``QueryTimeoutError`` arrives (p50 and max; target: within 200 ms), on a pool of one connection
   that must run the next query.
3. load: ``load_arrow`` of ``--load-rows`` rows by batched ``INSERT`` (``benchmarks/spark_load.py``):
   rows/s printed, and PyHive's own parameter substitution of the same statements for comparison.
4. memory: a fresh process streams ``--memory-rows`` (50 million) rows as Arrow batches; its peak
   RSS at the end is compared with its peak after the first tenth (5 million). Target: within 1.2x
   (nothing is buffered beyond one batch). ``--memory-rows 0`` skips it (it takes minutes).

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.spark import SparkNotInstalledError, SparkThriftServer  # noqa: E402
from plots import save_ratios  # noqa: E402
from spark_load import thrift_load  # noqa: E402

from floe_compute import QueryTimeoutError, create_plugin  # noqa: E402

ROWS_RATIO_MAX = 1.10
RSS_RATIO_MAX = 1.20
TIMEOUT_OVERSHOOT_MAX_MS = 200.0
BATCH = 10_000


def query(rows: int) -> str:
    partitions = max(2, rows // 500_000)
    return f"SELECT id, concat('row ', CAST(id AS STRING)) AS label FROM range(0, {rows}, 1, {partitions})"


def pyhive_loop(server: SparkThriftServer, sql: str) -> int:
    from pyhive import hive

    with contextlib.closing(hive.connect(host=server.host, port=server.port, username="bench")) as conn:
        cursor = conn.cursor()
        cursor.execute("SET spark.sql.thriftServer.incrementalCollect=true")
        cursor.arraysize = BATCH
        cursor.execute(sql)
        seen = 0
        while rows := cursor.fetchmany(BATCH):
            seen += len(rows)
        return seen


def throughput(server: SparkThriftServer, rows: int, repeat: int) -> bool:
    sql = query(rows)
    with create_plugin(server.url(), pool={"size": 1}) as plugin:

        def plugin_rows() -> int:
            with plugin.execute(sql, batch_size=BATCH) as result:
                return sum(1 for _ in result)

        def plugin_arrow() -> int:
            with plugin.execute(sql, batch_size=BATCH) as result:
                return sum(batch.num_rows for batch in result.arrow_batches())

        cases: dict[str, Callable[[], int]] = {
            "pyhive fetchmany": lambda: pyhive_loop(server, sql),
            "plugin rows": plugin_rows,
            "plugin arrow": plugin_arrow,
        }
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(repeat):  # interleaved: a burst of load elsewhere hits every case alike
            for name, case in cases.items():
                started = time.perf_counter()
                seen = case()
                best[name] = min(best[name], time.perf_counter() - started)
                if seen != rows:
                    print(f"  FAIL {name} read {seen} rows, expected {rows}")
                    return False
    print(f"throughput: {rows:,} rows (id, label), {BATCH:,} per fetch, best of {repeat}")
    for name, wall in best.items():
        print(f"  {name:<18} {wall:7.2f} s {rows / wall:>12,.0f} rows/s")
    ratio = best["plugin rows"] / best["pyhive fetchmany"]
    ok = ratio <= ROWS_RATIO_MAX
    arrow = best["plugin arrow"] / best["pyhive fetchmany"]
    save_ratios(
        "spark",
        [("rows / PyHive fetchmany", ratio, ROWS_RATIO_MAX), ("Arrow / PyHive fetchmany", arrow, 0.0)],
    )
    print(f"  {'PASS' if ok else 'FAIL'} plugin rows / PyHive fetchmany: {ratio:.2f}x (<= {ROWS_RATIO_MAX}x)")
    return ok


def timeouts(server: SparkThriftServer, runs: int) -> bool:
    overshoot = []
    with create_plugin(server.url(), pool={"size": 1, "max_overflow": 0}) as plugin:
        for _ in range(runs):
            try:
                plugin.execute("SELECT count(*) FROM range(100000000000)", timeout=1).fetchall()
                print("  FAIL the query finished before its deadline")
                return False
            except QueryTimeoutError as exc:
                overshoot.append((exc.elapsed - 1.0) * 1000)
            with plugin.execute("SELECT 1", timeout=30) as result:  # the one connection is usable
                assert result.fetchall() == [(1,)]
    worst = max(overshoot)
    ok = worst <= TIMEOUT_OVERSHOOT_MAX_MS
    print(f"timeouts: {runs} x count(*) over range(10^11) with timeout=1 s, pool of 1")
    print(
        f"  {'PASS' if ok else 'FAIL'} QueryTimeoutError after the deadline: "
        f"p50 {statistics.median(overshoot):.0f} ms, max {worst:.0f} ms (<= {TIMEOUT_OVERSHOOT_MAX_MS:g} ms)"
    )
    return ok


MEMORY_SCRIPT = """
import resource, sys, time
from floe_compute import create_plugin
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
url, rows = sys.argv[1], int(sys.argv[2])
started, seen, early = time.perf_counter(), 0, None
with create_plugin(url) as plugin:
    sql = f"SELECT id FROM range(0, {rows}, 1, {max(2, rows // 1_000_000)})"
    with plugin.execute(sql, batch_size=50_000) as result:
        for batch in result.arrow_batches():
            seen += batch.num_rows
            if early is None and seen >= rows // 10:
                early = rss()
print(seen, early, rss(), time.perf_counter() - started)
"""


def memory(server: SparkThriftServer, rows: int) -> bool:
    """Peak RSS of a fresh process after all ``rows`` against its peak after the first tenth."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY_SCRIPT), server.url(), str(rows)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seen, early, peak, wall = out.stdout.split()
    ratio = float(peak) / float(early)
    ok = int(seen) == rows and ratio <= RSS_RATIO_MAX
    print(f"memory: {rows:,} rows (id) as Arrow batches of 50,000 in a fresh process, {float(wall):.0f} s")
    print(
        f"  {'PASS' if ok else 'FAIL'} peak RSS after {rows // 10:,} rows {float(early):.0f} MiB, "
        f"after {int(seen):,} rows {float(peak):.0f} MiB: {ratio:.2f}x (<= {RSS_RATIO_MAX}x)"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeouts", type=int, default=10)
    parser.add_argument("--memory-rows", type=int, default=50_000_000)
    parser.add_argument("--port", type=int, help="use a server already running on this port")
    parser.add_argument("--load-rows", type=int, default=50_000, help="rows load_arrow writes (0: skip)")
    args = parser.parse_args()
    logging.getLogger("floe_compute").setLevel(logging.ERROR)  # one warning per timed-out query
    try:
        server = SparkThriftServer.attach(args.port) if args.port else SparkThriftServer()
    except SparkNotInstalledError as exc:
        print(f"spark: skipped ({exc})")
        return 0
    print("spark: starting a local Spark Thrift Server...", flush=True)
    with server if not server.external else contextlib.nullcontext(server):
        ok = throughput(server, args.rows, args.repeat)
        ok = timeouts(server, args.timeouts) and ok
        if args.load_rows:
            ok = thrift_load(server.url(), server.host, server.port, args.load_rows, 2) and ok
        if args.memory_rows:
            ok = memory(server, args.memory_rows) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
