"""PostgreSQL to Arrow against its peers: ``python benchmarks/postgres_arrow.py``.

Starts a throwaway cluster (``fixtures/postgres.py``) and reads the same query, on the same server
in the same run, through:

* ``plugin_plain``: ``execute(sql)`` + ``arrow_batches(100000)``, as a user writes it (the first
  read asks for Arrow: the COPY path);
* ``plugin_arrow``: ``execute(sql, arrow=True)`` + ``arrow_batches(100000)`` (the COPY, started at
  ``execute()``);
* ``plugin_built``: ``execute(sql)``, one row read, then ``arrow_batches(100000)``: batches built
  from rows (the generic builder every engine without a native reader goes through);
* ``plugin_rows``: iterating the plugin's rows;
* ``adbc``: ``adbc-driver-postgresql``, ``cursor.fetch_record_batch()``;
* ``connectorx``: ``connectorx.read_sql(..., return_type="arrow")``;
* ``psycopg_rows``: a psycopg server-side cursor, ``fetchmany(10000)``.

Each case runs in a fresh process (peak RSS belongs to it alone), after its imports, its connection
and a warm-up read of a few rows through the same path; the timed part is the query and reading
every row or batch. Repetitions are interleaved; the best wall time and the worst peak RSS are kept.
The client's CPU time (``cpu s``, best run) is printed beside them: on a loaded machine it moves
far less than the wall time, and says how much of the wall time is this process's own work.
Targets: plugin Arrow, plain and hinted, within 1.2x ADBC's wall time and 64 MB of its peak RSS;
plain within 1.05x hinted; plugin Arrow's peak RSS flat from 2 to 20 million rows (ratio <= 1.2);
the builder within 1.3x the plugin's rows; the plugin's rows within 1.15x psycopg's.
Exits 1 when a target fails; writes ``bench-results/postgres_arrow.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench-results" / "postgres_arrow.json"
QUERY = "SELECT g, g * 2, 'x' || g::text FROM generate_series(1, {rows}) g"
BATCH = 100_000
WARMUP_ROWS = 1_000
CASES = ("plugin_plain", "plugin_arrow", "plugin_built", "plugin_rows", "adbc", "connectorx", "psycopg_rows")
ARROW_OVER_ADBC_MAX = 1.2
RSS_OVER_ADBC_MAX_MB = 64.0
FLAT_RSS_RATIO_MAX = 1.2
BUILT_OVER_ROWS_MAX = 1.3
PLAIN_OVER_HINTED_MAX = 1.05
ROWS_OVER_PSYCOPG_MAX = 1.15


# -- child ----------------------------------------------------------------------------------------


def _plugin(url: str) -> Any:
    from floe_compute import create_plugin

    return create_plugin(url, pool={"size": 1, "max_overflow": 0}).connect()


def _read_plugin_arrow(plugin: Any, sql: str, hint: bool, rows_first: bool = False) -> int:
    with plugin.execute(sql, arrow=hint) as result:
        first = len(result.fetchmany(1)) if rows_first else 0  # then Arrow is built from rows
        return first + sum(batch.num_rows for batch in result.arrow_batches(BATCH))


def _read_plugin_rows(plugin: Any, sql: str) -> int:
    count = 0
    with plugin.execute(sql) as result:
        for _ in result:
            count += 1
    return count


def case(name: str, url: str, rows: int) -> dict[str, Any]:
    """Set up, warm up, then time one read of ``rows`` rows."""
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    read: Callable[[str], int]
    if name in ("plugin_arrow", "plugin_plain", "plugin_built"):
        plugin = _plugin(url)
        hint, built = name == "plugin_arrow", name == "plugin_built"
        read = lambda sql: _read_plugin_arrow(plugin, sql, hint, built)  # noqa: E731
    elif name == "plugin_rows":
        plugin = _plugin(url)
        read = lambda sql: _read_plugin_rows(plugin, sql)  # noqa: E731
    elif name == "adbc":
        import adbc_driver_postgresql.dbapi as adbc

        connection = adbc.connect(libpq)

        def read(sql: str) -> int:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return sum(batch.num_rows for batch in cursor.fetch_record_batch())

    elif name == "connectorx":
        import connectorx

        read = lambda sql: connectorx.read_sql(libpq, sql, return_type="arrow").num_rows  # noqa: E731
    elif name == "psycopg_rows":
        import psycopg

        connection = psycopg.connect(libpq)

        def read(sql: str) -> int:
            count = 0
            with connection.transaction(), connection.cursor("bench") as cursor:
                cursor.execute(sql)
                while batch := cursor.fetchmany(10_000):
                    count += len(batch)
            return count

    else:
        raise SystemExit(f"unknown case {name}")
    read(QUERY.format(rows=WARMUP_ROWS))
    setup_rss = _peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    seen = read(QUERY.format(rows=rows))
    wall = time.perf_counter() - started
    return {
        "case": name,
        "rows": seen,
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
        "setup_rss_mb": setup_rss,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- parent ---------------------------------------------------------------------------------------


def spawn(name: str, url: str, rows: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--case", name, "--url", url, "--rows", str(rows)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"case {name} ({rows}) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(url: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    plan = [(name, name, args.rows) for name in CASES]
    plan += [("plugin_plain@small", "plugin_plain", args.small_rows)]
    plan += [("plugin_plain@large", "plugin_plain", args.large_rows)]
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in plan}
    for repetition in range(1, args.repeat + 1):
        for key, name, rows in plan:
            if key.endswith("@large") and repetition > 1:
                continue  # one run: it only checks that memory stays flat
            result = spawn(name, url, rows)
            runs[key].append(result)
            print(
                f"[{repetition}/{args.repeat}] {key:<20} {result['wall_s']:8.3f}s "
                f"{result['peak_rss_mb']:7.1f} MB",
                file=sys.stderr,
                flush=True,
            )
    return {
        key: {
            "rows_requested": next(rows for k, _, rows in plan if k == key),
            "rows": min(run["rows"] for run in value),
            "wall_s": min(run["wall_s"] for run in value),
            "walls": [run["wall_s"] for run in value],
            "cpu_s": min(run["cpu_s"] for run in value),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in value),
        }
        for key, value in runs.items()
    }


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, float, float, bool, str]]:
    wall = {key: value["wall_s"] for key, value in results.items()}
    rss = {key: value["peak_rss_mb"] for key, value in results.items()}
    checks = [
        ("plugin Arrow (plain) / ADBC wall", wall["plugin_plain"] / wall["adbc"], ARROW_OVER_ADBC_MAX, "x"),
        (
            "plugin Arrow (arrow=True) / ADBC wall",
            wall["plugin_arrow"] / wall["adbc"],
            ARROW_OVER_ADBC_MAX,
            "x",
        ),
        (
            "plugin Arrow plain / arrow=True wall",
            wall["plugin_plain"] / wall["plugin_arrow"],
            PLAIN_OVER_HINTED_MAX,
            "x",
        ),
        (
            "plugin Arrow (plain) - ADBC peak RSS",
            rss["plugin_plain"] - rss["adbc"],
            RSS_OVER_ADBC_MAX_MB,
            " MB",
        ),
        (
            "plugin Arrow peak RSS large / small",
            rss["plugin_plain@large"] / rss["plugin_plain@small"],
            FLAT_RSS_RATIO_MAX,
            "x",
        ),
        (
            "plugin rows / psycopg rows wall",
            wall["plugin_rows"] / wall["psycopg_rows"],
            ROWS_OVER_PSYCOPG_MAX,
            "x",
        ),
        (
            "built-from-rows Arrow / plugin rows wall",
            wall["plugin_built"] / wall["plugin_rows"],
            BUILT_OVER_ROWS_MAX,
            "x",
        ),
    ]
    exact = all(value["rows"] == value["rows_requested"] for value in results.values())
    return [(name, value, limit, value <= limit, unit) for name, value, limit, unit in checks] + [
        ("rows seen == rows requested", float(exact), 1.0, exact, "")
    ]


def report(
    results: dict[str, dict[str, Any]], checks: list[tuple[str, float, float, bool, str]], repeat: int
) -> None:
    adbc = results["adbc"]
    print(f"\nPostgreSQL to Arrow: {QUERY.format(rows='N')}, N = {results['adbc']['rows_requested']:,}")
    print(f"best of {repeat} fresh processes (all runs in brackets); peak RSS = worst run\n")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':<20} {'rows':>11} {'wall s':>8} {'/ ADBC':>7} {'cpu s':>6} {'peak RSS MB':>12}  runs")
    for key, value in results.items():
        runs = ", ".join(f"{w:.2f}" for w in value["walls"])
        same = value["rows_requested"] == adbc["rows_requested"]
        ratio = f"{value['wall_s'] / adbc['wall_s']:6.2f}x" if same else f"{'-':>7}"
        print(
            f"{key:<20} {value['rows_requested']:>11,} {value['wall_s']:8.2f} "
            f"{ratio} {value['cpu_s']:6.2f} {value['peak_rss_mb']:12.1f}  ({runs})"
        )
    print("\ntargets:")
    for name, value, limit, passed, unit in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<44} {value:8.2f}{unit}  (target <= {limit:g}{unit})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--case", help="child mode: run this one case and print its JSON measurement")
    parser.add_argument("--url", help="child mode: the server's URL")
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--small-rows", type=int, default=2_000_000)
    parser.add_argument("--large-rows", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(case(args.case, args.url, args.rows)), flush=True)
        return 0
    from fixtures.postgres import PostgresServer

    with PostgresServer() as server:
        results = measure(server.url(), args)
    checks = targets(results)
    report(results, checks, args.repeat)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"results": results, "targets": checks}, indent=2))
    return 0 if all(check[3] for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
