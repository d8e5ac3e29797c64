"""``make bench``, Snowflake: the plugin's Arrow path against the connector's own loop, and how soon
after its deadline a timed-out query returns. Against the fakesnow emulator (``make fakesnow``).

1. The same query, in the same run, through ``plugin.execute(...).arrow_batches()`` and through the
   connector's own ``cursor.execute(); for table in cursor.fetch_arrow_batches()`` loop on a
   connection of its own. Repetitions alternate; the best wall time of each is kept (noise only
   adds). Target: the plugin within 1.10x. Most of either is the emulator computing the result and
   sending it; the plugin adds its per-query COMMIT round trip and the checks around the reader.
2. A query that Snowflake would hold (played by the recording proxy, as in the tests) with a
   0.2 s timeout, repeatedly: how long after the deadline the abort-request reaches "Snowflake"
   (the proxy), and how long until ``QueryTimeoutError`` reaches the caller (the abort-request,
   Snowflake's 000604 reply to the held query, then the core's ROLLBACK round trip). Target: the
   error within 100 ms of the deadline (p95).
3. ``load_arrow`` of ``--load-rows`` rows (int, int, text, decimal, timestamp) against the same
   Parquet, PUT, COPY INTO path written by hand with the connector (``snowflake_load.py``).
   Target: within 1.10x.

Skips (exit 0, with a message) when the emulator's tool environment is missing.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.snowflake import ABORT_REQUEST, FakesnowNotInstalledError, FakesnowServer, LongQueries  # noqa: E402
from plots import save_ratios  # noqa: E402
from snowflake_load import LOAD_RATIO_MAX  # noqa: E402
from snowflake_load import measure as measure_load  # noqa: E402

ARROW_RATIO_MAX = 1.10
TIMEOUT_OVERSHOOT_P95_MAX_MS = 100.0


def query(rows: int) -> str:
    return (
        "SELECT seq8() AS id, uniform(1, 1000, random()) AS amount, 'customer ' || (seq8() % 977) AS name "
        f"FROM TABLE(GENERATOR(ROWCOUNT => {rows}))"
    )


def raw_loop(server: FakesnowServer, database: str, sql: str) -> tuple[float, int]:
    import snowflake.connector

    connection = snowflake.connector.connect(
        user=server.user, password=server.password, account=server.account, database=database,
        schema="bench", **server.endpoint,
    )  # fmt: skip
    try:
        started = time.perf_counter()
        cursor = connection.cursor()
        cursor.execute(sql)
        rows = sum(table.num_rows for table in cursor.fetch_arrow_batches())
        return time.perf_counter() - started, rows
    finally:
        connection.close()


def plugin_arrow(plugin: object, sql: str, batch_size: int) -> tuple[float, int]:
    started = time.perf_counter()
    with plugin.execute(sql) as result:  # type: ignore[attr-defined]
        rows = sum(batch.num_rows for batch in result.arrow_batches(batch_size))
    return time.perf_counter() - started, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeouts", type=int, default=20)
    parser.add_argument("--load-rows", type=int, default=1_000_000)
    parser.add_argument("--load-repeat", type=int, default=5, help="a load is short: more runs, less noise")
    args = parser.parse_args(argv)
    logging.getLogger("floe_compute").setLevel(logging.ERROR)  # one timeout line per run otherwise
    try:
        server = FakesnowServer()
    except FakesnowNotInstalledError as exc:
        print(f"snowflake bench skipped: {exc}")
        return 0

    from fixtures.recording_proxy import RecordingProxy

    from floe_compute import QueryTimeoutError, create_plugin

    failed = False
    with server:
        database = "bench_db"
        sql = query(args.rows)
        with create_plugin(server.plugin_url(database, "bench"), **server.endpoint) as plugin:
            plugin.execute("SELECT 1").close()  # the session exists before anything is timed
            raw_loop(server, database, "SELECT 1")
            raw_times, plugin_times = [], []
            for _ in range(args.repeat):
                took, n_raw = raw_loop(server, database, sql)
                raw_times.append(took)
                took, n_plugin = plugin_arrow(plugin, sql, 100_000)
                plugin_times.append(took)
                assert n_raw == n_plugin == args.rows, (n_raw, n_plugin)
        raw, ours = min(raw_times), min(plugin_times)
        ratio = ours / raw
        ok = ratio <= ARROW_RATIO_MAX
        ratios = [("Arrow batches / connector Arrow loop", ratio, ARROW_RATIO_MAX)]
        failed |= not ok
        print(f"snowflake (fakesnow), {args.rows:,} rows x 3 columns as Arrow, best of {args.repeat}:")
        print(f"  connector fetch_arrow_batches loop  {raw:7.3f} s")
        print(
            f"  plugin arrow_batches                {ours:7.3f} s  {ratio:.2f}x   "
            f"(<= {ARROW_RATIO_MAX:.2f}x) {'PASS' if ok else 'FAIL'}"
        )

        loads = measure_load(server, "bench_load", args.load_rows, args.load_repeat)
        load_ratio = loads["load_arrow"] / loads["by_hand"]
        ok = load_ratio <= LOAD_RATIO_MAX
        failed |= not ok
        ratios.append(("load_arrow / Parquet, PUT, COPY INTO by hand", load_ratio, LOAD_RATIO_MAX))
        save_ratios("snowflake", ratios)
        print(f"snowflake (fakesnow), load {args.load_rows:,} rows x 5 columns, best of {args.load_repeat}:")
        print(f"  by hand: Parquet, PUT, COPY INTO    {loads['by_hand']:7.3f} s")
        print(
            f"  plugin load_arrow                   {loads['load_arrow']:7.3f} s  {load_ratio:.2f}x   "
            f"(<= {LOAD_RATIO_MAX:.2f}x) {'PASS' if ok else 'FAIL'}   "
            f"{args.load_rows / loads['load_arrow']:,.0f} rows/s"
        )

        with RecordingProxy(server.url) as proxy:
            stand_in = LongQueries(proxy)
            endpoint = {"host": "127.0.0.1", "port": proxy.port, "protocol": "http"}
            with create_plugin(server.plugin_url(database, "bench"), **endpoint) as plugin:
                plugin.execute("SELECT 1").close()
                overshoot_ms, abort_ms = [], []
                for _ in range(args.timeouts):
                    proxy.clear()
                    started = time.monotonic()
                    try:
                        plugin.execute("SELECT SYSTEM$WAIT(600)", timeout=0.2).fetchall()
                    except QueryTimeoutError:
                        overshoot_ms.append((time.monotonic() - started - 0.2) * 1000)
                    else:
                        raise AssertionError("the held query did not time out")
                    abort = proxy.wait_for(lambda x: x.path == ABORT_REQUEST)
                    abort_ms.append((abort.started - started - 0.2) * 1000)
            stand_in.stop()
        p50 = statistics.median(overshoot_ms)
        p95 = statistics.quantiles(overshoot_ms, n=20)[-1] if len(overshoot_ms) >= 2 else overshoot_ms[0]
        ok = p95 <= TIMEOUT_OVERSHOOT_P95_MAX_MS
        failed |= not ok
        print(
            f"  abort-request at Snowflake after the deadline: p50 {statistics.median(abort_ms):.1f} ms, "
            f"max {max(abort_ms):.1f} ms"
        )
        print(
            f"  QueryTimeoutError after the deadline ({len(overshoot_ms)} runs through the proxy): "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms   (p95 <= {TIMEOUT_OVERSHOOT_P95_MAX_MS:.0f} ms) "
            f"{'PASS' if ok else 'FAIL'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
