"""PostgreSQL under load and under fire: ``python benchmarks/postgres_load.py``.

Starts a throwaway cluster (``fixtures/postgres.py``), then

1. load: 16 threads x 1000 short reads on a pool of 4, with every backend killed twice during the
   run (``pg_terminate_backend``), twice: with retries off (``retry.reads: 0``, as before safe
   retries) and on (the default). Off, only queries running at the instant of a kill may fail, each
   with ``ConnectionFailedError`` saying the connection was lost; on, none may fail. Both: every
   query started after a kill succeeded, nothing is in use at the end, and no log record carries a
   traceback. Prints p50/p99 latency, the failed-query count and the reconnect count of each.
2. timeouts: queries that would run for 10 s, with a 200 ms deadline: how long after the deadline
   ``QueryTimeoutError`` arrives (target: within 100 ms), and that the connection is reused.

Exits 1 when a check fails. ``--threads``, ``--queries``, ``--pool`` and ``--kills`` change the load.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.postgres import PostgresServer  # noqa: E402

from floe_compute import (  # noqa: E402
    ComputeError,
    ComputePlugin,
    ConnectionFailedError,
    QueryTimeoutError,
    create_plugin,
)

TIMEOUT_OVERSHOOT_MAX_MS = 100.0


@dataclass
class Outcome:
    started: float
    ended: float
    error: BaseException | None


def run_load(
    plugin: ComputePlugin, threads: int, queries: int
) -> tuple[list[Outcome], list[threading.Thread]]:
    """Starts the workers; the shared list fills as queries end (appends are atomic)."""
    outcomes: list[Outcome] = []
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for i in range(queries):
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                with plugin.execute("SELECT :i + 1", {"i": i}) as result:
                    result.fetchall()
            except BaseException as exc:  # every error is checked below, raw driver errors included
                error = exc
            outcomes.append(Outcome(started, time.perf_counter(), error))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    return outcomes, workers


class Tracebacks(logging.Handler):
    """Counts log records that carry a traceback (SQLAlchemy's "Error closing cursor", say)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None:
            self.count += 1
            self.first = self.first or [f"{record.name}: {record.getMessage()} ({record.exc_info[1]!r})"]


def load(server: PostgresServer, threads: int, queries: int, pool: int, kills: int, retries: int) -> bool:
    plugin = create_plugin(
        server.url(),
        name="load",
        pool={"size": pool, "max_overflow": 0, "timeout": 60},
        retry={"reads": retries},
    )
    tracebacks = Tracebacks()
    logging.getLogger().addHandler(tracebacks)
    with plugin:
        started = time.perf_counter()
        outcomes, workers = run_load(plugin, threads, queries)
        windows: list[tuple[float, float]] = []
        total = threads * queries
        for k in range(kills):
            # kill when the run is (k+1)/(kills+1) done
            while len(outcomes) < total * (k + 1) // (kills + 1):
                time.sleep(0.001)
            before = time.perf_counter()
            killed = server.terminate_backends()
            windows.append((before, time.perf_counter()))
            print(f"  kill {k + 1}: {killed} backends terminated")
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - started
        stats = plugin.pool_stats()
    logging.getLogger().removeHandler(tracebacks)

    failed = [o for o in outcomes if o.error is not None]
    latencies = sorted((o.ended - o.started) * 1000 for o in outcomes if o.error is None)
    problems = []
    for o in failed:
        if not isinstance(o.error, ConnectionFailedError) or "connection was lost" not in str(o.error):
            problems.append(f"unexpected error: {type(o.error).__name__}: {o.error}")
        elif not any(o.started <= end and o.ended >= begin for begin, end in windows):
            problems.append(f"failed outside a kill: {o.error}")
    after_kill = [o for o in failed if any(o.started > end for _, end in windows[-1:])]
    problems += [f"started after the last kill and failed: {o.error}" for o in after_kill]
    if stats.in_use:
        problems.append(f"{stats.in_use} connections still in use at the end")
    problems += [f"a read failed with retries on: {o.error}" for o in failed if retries]
    if tracebacks.count:
        problems.append(f"{tracebacks.count} log records with a traceback, first: {tracebacks.first}")

    mode = f"retry.reads={retries}" + (" (retries off)" if not retries else "")
    print(f"load, {mode}: {threads} threads x {queries} reads, pool {pool}, {kills} kills, {wall:.1f} s")
    print(f"  queries    {len(outcomes)} ({len(outcomes) / wall:.0f}/s)")
    print(f"  latency    p50 {percentile(latencies, 50):.2f} ms   p99 {percentile(latencies, 99):.2f} ms")
    print(f"  failed     {len(failed)} (all ConnectionFailedError 'connection was lost': {not problems})")
    print(f"  tracebacks {tracebacks.count} log records")
    print(
        f"  reconnects {stats.reconnects}  invalidations {stats.invalidations}  in use at end {stats.in_use}"
    )
    for problem in problems[:10]:
        print("  FAIL", problem)
    return not problems and len(outcomes) == total


def timeouts(server: PostgresServer, runs: int = 20) -> bool:
    overshoot = []
    with create_plugin(server.url(), pool={"size": 1, "max_overflow": 0}) as plugin:
        pid = plugin.execute("SELECT pg_backend_pid()").fetchall()
        for _ in range(runs):
            started = time.perf_counter()
            try:
                plugin.execute("SELECT pg_sleep(10)", timeout=0.2).fetchall()
            except QueryTimeoutError:
                overshoot.append((time.perf_counter() - started - 0.2) * 1000)
            except ComputeError as exc:
                print("  FAIL", exc)
                return False
            # the one connection is usable at once, and it is the same backend
            if plugin.execute("SELECT pg_backend_pid()", timeout=5).fetchall() != pid:
                print("  FAIL the connection was replaced after a timeout")
                return False
    worst = max(overshoot)
    ok = len(overshoot) == runs and worst <= TIMEOUT_OVERSHOOT_MAX_MS
    verdict = "PASS" if ok else "FAIL"
    print(f"timeouts: {runs} x pg_sleep(10) with timeout=0.2 s, pool of 1")
    print(
        f"  {verdict} QueryTimeoutError after the deadline: p50 {statistics.median(overshoot):.1f} ms, "
        f"max {worst:.1f} ms (<= {TIMEOUT_OVERSHOOT_MAX_MS:g} ms)"
    )
    return ok


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--kills", type=int, default=2)
    args = parser.parse_args()
    # expected noise: one warning line per timed-out query or lost connection (counted, not shown);
    # the checks look at every error the callers got, and at every record with a traceback
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger().addHandler(logging.NullHandler())
    logging.lastResort = None
    with PostgresServer() as server:
        ok = load(server, args.threads, args.queries, args.pool, args.kills, retries=0)
        ok = load(server, args.threads, args.queries, args.pool, args.kills, retries=1) and ok
        ok = timeouts(server) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
