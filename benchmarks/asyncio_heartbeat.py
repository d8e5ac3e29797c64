"""``make bench``, asyncio: how long the event loop goes without running while queries run.

A heartbeat task on the loop wakes every 10 ms while (1) a DuckDB aggregate runs for a second (it
ends in its timeout) and (2) 2 million rows stream as Arrow batches through ``aexecute``. The
widest gap between two beats is what any other coroutine of the service would have waited.
Target: no gap above 50 ms. A gap also holds time the OS gave to other processes, so the run is
repeated and the best run counts (a call that blocked the loop would show in every run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import time

GAP_MAX_MS = 50.0
BLOCKING = "SELECT count(*) FROM range(10000000000)"


async def one_run() -> tuple[float, float]:
    from floe_compute import QueryTimeoutError, create_plugin

    ticks: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    with create_plugin(limits={"threads": 1}) as plugin:
        # the first Arrow call imports pyarrow, which holds the GIL for ~0.1 s (once per process,
        # documented): a service warms it up at start, as here
        await (await plugin.aexecute("SELECT 1")).to_arrow()
        ticker = asyncio.create_task(heartbeat())
        with contextlib.suppress(QueryTimeoutError):  # it runs for a second inside DuckDB
            await plugin.aexecute(BLOCKING, timeout=1.0)
        during_query = max(b - a for a, b in itertools.pairwise(ticks))
        mark = len(ticks)
        async with plugin.aexecute("SELECT i, i * 2 AS j FROM range(2000000) t(i)") as result:
            rows = sum([batch.num_rows async for batch in result.arrow_batches(100_000)])
        assert rows == 2_000_000
        stop.set()
        await ticker
    during_stream = max(b - a for a, b in itertools.pairwise(ticks[mark - 1 :]))
    return during_query, during_stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    runs = [asyncio.run(one_run()) for _ in range(args.repeat)]
    query, stream = min(r[0] for r in runs) * 1000, min(r[1] for r in runs) * 1000
    ok = max(query, stream) <= GAP_MAX_MS
    print(f"asyncio heartbeat (10 ms beat), widest gap, best of {args.repeat} runs:")
    print(f"  while a 1 s DuckDB aggregate runs          {query:7.1f} ms")
    print(f"  while 2,000,000 rows stream as Arrow       {stream:7.1f} ms")
    print(f"  target <= {GAP_MAX_MS:.0f} ms: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
