"""floe-compute demo: real work on a real DuckDB file, with the numbers to show for it.

    .venv/bin/python examples/demo.py [--data-dir DIR] [--rows N]

1. builds tables in a DuckDB file (a temporary directory, removed at the end, unless --data-dir),
2. streams a few million rows as Arrow batches, and as Python rows,
3. runs a query that hits its timeout and is cancelled on the engine (and the pool stays usable),
4. runs concurrent queries through the pool, then prints pool statistics and health,
5. prints the dbt profile for the same target.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow.compute as pc
from iceberg_demo import iceberg_section  # examples/, next to this file

import floe_compute
from floe_compute import ComputePlugin, QueryTimeoutError, create_plugin
from floe_compute.dbt import render_profiles

ORDERS = 3_000_000
CUSTOMERS = 100_000
ARROW_BATCH = 100_000
TIMEOUT = 0.5


def heading(text: str) -> None:
    print(f"\n== {text}")


def say(text: str) -> None:
    print(f"   {text}", flush=True)


def rate(rows: int, seconds: float) -> str:
    return f"{rows:,} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s)"


def build_tables(compute: ComputePlugin, orders: int) -> None:
    heading("1. Build tables in the DuckDB file")
    statements = {
        "customers": f"""
            CREATE OR REPLACE TABLE customers AS
            SELECT range AS customer_id,
                   'customer-' || range AS name,
                   ['EMEA', 'AMER', 'APAC'][(range % 3) + 1] AS region
            FROM range({CUSTOMERS})""",
        "orders": f"""
            CREATE OR REPLACE TABLE orders AS
            SELECT range AS order_id,
                   hash(range) % {CUSTOMERS} AS customer_id,
                   DATE '2024-01-01' + (range % 366)::INTEGER AS order_date,
                   round((hash(range * 7) % 100000) / 100.0, 2)::DECIMAL(10, 2) AS amount
            FROM range({orders})""",
    }
    for table, sql in statements.items():
        started = time.perf_counter()
        with compute.execute(sql):
            pass
        with compute.execute(f"SELECT count(*) FROM {table}") as result:
            (count,) = result.fetchone() or (0,)
        say(f"{table:<10} {count:>12,} rows  built in {time.perf_counter() - started:.2f} s")


def stream_arrow(compute: ComputePlugin) -> None:
    heading(f"2a. Stream orders as Arrow batches ({ARROW_BATCH:,} rows per batch)")
    started = time.perf_counter()
    rows = batches = largest = 0
    total = 0.0
    with compute.execute("SELECT order_id, customer_id, order_date, amount FROM orders") as result:
        reader = result.arrow_batches(ARROW_BATCH)
        say(f"schema: {', '.join(f'{f.name} {f.type}' for f in reader.schema)}")
        for batch in reader:
            rows += batch.num_rows
            batches += 1
            largest = max(largest, batch.num_rows)
            total += pc.sum(batch.column("amount").cast("float64")).as_py() or 0.0  # Arrow's own kernel
    elapsed = time.perf_counter() - started
    say(f"{rate(rows, elapsed)}, {batches} batches, largest {largest:,} rows")
    with compute.execute("SELECT sum(amount)::DOUBLE FROM orders") as result:
        (expected,) = result.fetchone() or (0.0,)
    say(f"sum(amount) from the batches {total:,.2f} = from SQL {expected:,.2f}")


def stream_rows(compute: ComputePlugin) -> None:
    heading("2b. Stream a join as Python rows (tuples, fetched batch by batch)")
    sql = """
        SELECT o.order_id, c.region, o.amount
        FROM orders o JOIN customers c USING (customer_id)
        WHERE o.order_date < DATE '2024-09-01'"""
    started = time.perf_counter()
    per_region: dict[str, int] = {}
    with compute.execute(sql) as result:
        for _order_id, region, _amount in result:
            per_region[region] = per_region.get(region, 0) + 1
        rows = result.rowcount
    say(rate(rows, time.perf_counter() - started))
    say("rows per region: " + ", ".join(f"{r} {n:,}" for r, n in sorted(per_region.items())))


def timeout_and_cancel(compute: ComputePlugin) -> None:
    heading(f"3. A query that runs past its timeout ({TIMEOUT} s)")
    sql = "SELECT sum(o.amount * c.customer_id) FROM orders o CROSS JOIN customers c"
    started = time.perf_counter()
    try:
        with compute.execute(sql, timeout=TIMEOUT) as result:
            result.fetchall()
        say("the query finished before its deadline (unexpected on this data)")
    except QueryTimeoutError as exc:
        elapsed = time.perf_counter() - started
        say(f"QueryTimeoutError after {elapsed:.2f} s (query {exc.query_id}):")
        say(f"  {exc}")
    started = time.perf_counter()
    with compute.execute("SELECT count(*) FROM orders") as result:
        (count,) = result.fetchone() or (0,)
    say(
        f"the pool is usable right after: SELECT count(*) FROM orders -> {count:,} "
        f"({(time.perf_counter() - started) * 1000:.1f} ms)"
    )


def pool_and_health(compute: ComputePlugin) -> None:
    heading("4. Pool statistics and health")
    months = [datetime.date(2024, m, 1) for m in range(1, 13)] + [datetime.date(2025, 1, 1)]

    sql = "SELECT count(*), sum(amount)::DOUBLE FROM orders WHERE order_date >= :start AND order_date < :end"
    in_use_seen: list[int] = []

    def month_revenue(month: int) -> tuple[int, float]:
        with compute.execute(sql, {"start": months[month], "end": months[month + 1]}) as result:
            row = result.fetchone()
            in_use_seen.append(compute.pool_stats().in_use)  # while this query holds its connection
            return (int(row[0]), float(row[1] or 0.0)) if row else (0, 0.0)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as threads:
        totals = list(threads.map(month_revenue, range(12)))
    say(
        f"12 monthly revenue queries from 8 threads in {time.perf_counter() - started:.2f} s: "
        f"{sum(n for n, _ in totals):,} orders, {sum(t for _, t in totals):,.2f} total"
    )
    say(f"connections in use at once, at most: {max(in_use_seen)}")
    stats = compute.pool_stats()
    say(
        f"pool: size={stats.size} max={stats.max} idle={stats.idle} in_use={stats.in_use} "
        f"overflow={stats.overflow} waiting={stats.waiting}"
    )
    say(
        f"      checkouts={stats.checkouts} connects={stats.connects} timeouts={stats.timeouts} "
        f"wait max={stats.wait_time_max_ms:.2f} ms total={stats.wait_time_total_ms:.2f} ms"
    )
    health = compute.health_check()
    say(f"health: {health.status} ({health.latency_ms:.1f} ms): {health.message}")


def dbt_profile(compute: ComputePlugin) -> None:
    heading("5. dbt profile for the same target (profiles.yml)")
    text = render_profiles(compute.dbt_profile(profile="floe", target="demo"))
    for line in text.rstrip().splitlines():
        say(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", type=Path, help="keep the DuckDB file here (default: a temp dir)")
    parser.add_argument("--rows", type=int, default=ORDERS, help=f"orders to build (default {ORDERS:,})")
    args = parser.parse_args(argv)

    # the timeout step's structured log record, shown inline
    logging.basicConfig(stream=sys.stdout, format="   log: %(message)s", level=logging.WARNING)
    # duckdb-engine does not declare SQLAlchemy statement-cache support; irrelevant here
    warnings.filterwarnings("ignore", message=".*supports_statement_cache.*")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="floe-demo-") as tmp:
        workdir = args.data_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        database = workdir / "warehouse.duckdb"
        url = f"duckdb:///{database}"
        print(f"floe-compute {floe_compute.__version__} demo, DuckDB {duckdb.__version__}")
        print(f"target: {url}")
        with create_plugin(url, pool={"size": 4, "max_overflow": 2}, timeouts={"query": 60}) as compute:
            build_tables(compute, args.rows)
            stream_arrow(compute)
            stream_rows(compute)
            timeout_and_cancel(compute)
            pool_and_health(compute)
            dbt_profile(compute)
        iceberg_section(workdir / "iceberg")
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
