"""Throughput and tail latency under concurrency: ``python benchmarks/concurrency.py``.

16 threads, then 16 asyncio coroutines (``aexecute``), each running ``--queries`` short queries
(``SELECT 1``, and a 100-row select) on a pool of 4 without overflow, through the plugin and
through plain pooled SQLAlchemy (``create_engine(..., pool_size=4, max_overflow=0)``, then
``connect()``/``execute()``/``fetchall()``; its coroutines run that on ``asyncio.to_thread``), on
DuckDB (a file database each) and PostgreSQL (a throwaway cluster, ``fixtures/postgres.py``).
On PostgreSQL, SQLAlchemy also runs with what the plugin promises (``pool_pre_ping``, rows
streamed through a server-side cursor: ``stream_results``), without a target: where the gap
to plain SQLAlchemy comes from.

Everything runs in this one process, repetitions interleaved (every case once, then again), so a
burst of load elsewhere on the machine hits every case alike; the best queries/s and the best p99 of
``--repeat`` runs are kept, and the least CPU time of this process per query (``cpu us/q``, all
threads; the server's is not in it), which a loaded machine moves far less than the wall time.
Targets: the plugin's queries/s within 1.25x of SQLAlchemy's, and its p99 within 2x SQLAlchemy's
p99. Exits 1 when a target fails; writes
``bench-results/concurrency.json``. ``--engines duckdb`` runs one engine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench-results" / "concurrency.json"
WORKERS = 16
POOL = 4
QUERIES = {"select1": "SELECT 1", "rows100": "SELECT i FROM {range100} t(i)"}
RANGE100 = {"duckdb": "range(100)", "postgresql": "generate_series(0, 99)"}
QPS_RATIO_MAX = 1.25
PROMISED = "sqlalchemy+promises"
P99_RATIO_MAX = 2.0

Query = Callable[[str], Any]


def _plugin_query(plugin: Any) -> Query:
    def run(sql: str) -> Any:
        with plugin.execute(sql) as result:
            return result.fetchall()

    return run


def _sqlalchemy_query(engine: Any) -> Query:
    from sqlalchemy import text

    def run(sql: str) -> Any:
        with engine.connect() as connection:
            return connection.execute(text(sql)).fetchall()

    return run


def _threads(run: Query, sql: str, queries: int) -> list[float]:
    latencies: list[float] = []
    barrier = threading.Barrier(WORKERS)

    def work() -> None:
        mine = []
        barrier.wait()
        for _ in range(queries):
            started = time.perf_counter()
            run(sql)
            mine.append(time.perf_counter() - started)
        latencies.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def _coroutines(run: Callable[[str], Any], sql: str, queries: int) -> list[float]:
    latencies: list[float] = []

    async def work() -> None:
        for _ in range(queries):
            started = time.perf_counter()
            await run(sql)
            latencies.append(time.perf_counter() - started)

    async def main() -> None:
        await asyncio.gather(*(work() for _ in range(WORKERS)))

    asyncio.run(main())
    return latencies


def _async_plugin(plugin: Any) -> Callable[[str], Any]:
    async def run(sql: str) -> Any:
        async with plugin.aexecute(sql) as result:
            return await result.fetchall()

    return run


def _async_sqlalchemy(engine: Any) -> Callable[[str], Any]:
    sync = _sqlalchemy_query(engine)

    async def run(sql: str) -> Any:
        return await asyncio.to_thread(sync, sql)

    return run


def measure(
    plugin: Any, engines: dict[str, Any], engine_name: str, queries: int
) -> dict[str, dict[str, float]]:
    """One run of every case on one engine: queries/s and p50/p99 latency in ms."""
    results: dict[str, dict[str, float]] = {}
    for mode in ("threads", "coroutines"):
        for query, sql in QUERIES.items():
            sql = sql.format(range100=RANGE100[engine_name])
            for who in (*engines, "plugin"):
                if mode == "threads":
                    run = _plugin_query(plugin) if who == "plugin" else _sqlalchemy_query(engines[who])
                    started, cpu = time.perf_counter(), time.process_time()
                    latencies = _threads(run, sql, queries)
                else:
                    arun = _async_plugin(plugin) if who == "plugin" else _async_sqlalchemy(engines[who])
                    started, cpu = time.perf_counter(), time.process_time()
                    latencies = _coroutines(arun, sql, queries)
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu
                latencies.sort()
                results[f"{engine_name} {mode} {query} {who}"] = {
                    "qps": len(latencies) / wall,
                    "cpu_us": cpu / len(latencies) * 1e6,
                    "p50_ms": latencies[len(latencies) // 2] * 1000,
                    "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
                }
    return results


@contextmanager
def targets(engines: list[str]) -> Iterator[dict[str, str]]:
    """The URL of each engine: a DuckDB file in a temporary directory, a throwaway PostgreSQL."""
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as directory:
        if "duckdb" in engines:
            urls["duckdb"] = f"duckdb:///{os.path.join(directory, '{who}.duckdb')}"
        if "postgresql" not in engines:
            yield urls
            return
        from fixtures.postgres import PostgresServer

        with PostgresServer() as server:
            urls["postgresql"] = server.url()
            yield urls


def run(engines: list[str], queries: int, repeat: int) -> dict[str, dict[str, Any]]:
    from sqlalchemy import create_engine

    from floe_compute import create_plugin

    runs: dict[str, list[dict[str, float]]] = {}
    with targets(engines) as urls:
        pairs = []
        for name, url in urls.items():
            # a DuckDB file each: one file takes connections of one configuration only
            pool = {"size": POOL, "max_overflow": 0, "timeout": 60}
            plugin = create_plugin(url.replace("{who}", "plugin"), pool=pool).connect()
            sa_url = url.replace("{who}", "sqlalchemy")
            engines = {"sqlalchemy": create_engine(sa_url, pool_size=POOL, max_overflow=0, pool_timeout=60)}
            if name == "postgresql":  # no target: what the plugin's promises cost SQLAlchemy itself
                promised = create_engine(
                    sa_url, pool_size=POOL, max_overflow=0, pool_timeout=60, pool_pre_ping=True
                )
                engines[PROMISED] = promised.execution_options(stream_results=True, max_row_buffer=10_000)
            pairs.append((name, plugin, engines))
        for repetition in range(1, repeat + 1):
            for name, plugin, engines in pairs:
                for key, value in measure(plugin, engines, name, queries).items():
                    runs.setdefault(key, []).append(value)
                    print(
                        f"[{repetition}/{repeat}] {key:<40} {value['qps']:8.0f} q/s  "
                        f"p50 {value['p50_ms']:6.1f} ms  p99 {value['p99_ms']:6.1f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
        for _, plugin, engines in pairs:
            plugin.disconnect()
            for engine in engines.values():
                engine.dispose()
    return {
        key: {
            "qps": max(r["qps"] for r in value),
            "p50_ms": min(r["p50_ms"] for r in value),
            "p99_ms": min(r["p99_ms"] for r in value),
            "cpu_us": min(r["cpu_us"] for r in value),
            "runs": value,
        }
        for key, value in runs.items()
    }


def checks(results: dict[str, dict[str, Any]]) -> list[tuple[str, float, float, bool]]:
    found = []
    for key, plugin in results.items():
        if not key.endswith(" plugin"):
            continue
        base = results[key.removesuffix(" plugin") + " sqlalchemy"]
        case = key.removesuffix(" plugin")
        qps = base["qps"] / plugin["qps"]
        p99 = plugin["p99_ms"] / base["p99_ms"]
        found.append((f"{case}: SQLAlchemy q/s / plugin q/s", qps, QPS_RATIO_MAX, qps <= QPS_RATIO_MAX))
        found.append((f"{case}: plugin p99 / SQLAlchemy p99", p99, P99_RATIO_MAX, p99 <= P99_RATIO_MAX))
    return found


def report(
    results: dict[str, dict[str, Any]], found: list[tuple[str, float, float, bool]], args: Any
) -> None:
    load = os.getloadavg()[0]
    print(
        f"\nConcurrency: {WORKERS} workers x {args.queries} queries, pool {POOL} (no overflow), "
        f"best of {args.repeat}, load average {load:.1f}\n"
    )
    print(f"{'case':<50} {'q/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/q':>9}")
    for key, value in results.items():
        print(
            f"{key:<50} {value['qps']:8.0f} {value['p50_ms']:8.2f} {value['p99_ms']:8.2f} "
            f"{value['cpu_us']:9.0f}"
        )
    print("\ntargets:")
    for name, value, limit, passed in found:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<58} {value:6.2f}x  (target <= {limit:g}x)")
    promised = [key for key in results if key.endswith(f" {PROMISED}")]
    if promised:
        print(f"\nno target: {PROMISED} (pool_pre_ping, stream_results) q/s / plugin q/s")
    for key in promised:
        case = key.removesuffix(f" {PROMISED}")
        ratio = results[key]["qps"] / results[f"{case} plugin"]["qps"]
        print(f"        {case:<58} {ratio:6.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=1000, help="queries per worker")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default="duckdb,postgresql")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args.engines.split(","), args.queries, args.repeat)
    found = checks(results)
    report(results, found, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"results": results, "targets": found}, indent=2))
    return 0 if all(check[3] for check in found) else 1


if __name__ == "__main__":
    sys.exit(main())
