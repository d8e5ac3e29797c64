"""What one short PostgreSQL read costs the client, by layer: ``python benchmarks/short_read_cost.py``.

Under concurrency on a small machine the client's CPU per query bounds the queries per second
(``concurrency.py``). This prints it for ``SELECT 1`` run one after another on one thread, against a
throwaway server (``fixtures/postgres.py``): psycopg alone (a client-side cursor, then a server-side
one), SQLAlchemy as ``concurrency.py`` runs it, SQLAlchemy with ``pool_pre_ping`` and with
``stream_results`` (what the plugin promises: a checked connection, rows streamed through a
server-side cursor), and the plugin. Best of ``--repeat`` runs of ``--queries`` each; no target:
it says where the plugin's cost over plain SQLAlchemy comes from.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cost(run: Callable[[], Any], queries: int, repeat: int) -> tuple[float, float]:
    """The least CPU time of this process per query (us), with that run's wall time per query."""
    for _ in range(min(300, queries)):
        run()
    best: tuple[float, float] | None = None
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(queries):
            run()
        cost = ((time.process_time() - cpu) / queries * 1e6, (time.perf_counter() - wall) / queries * 1e6)
        best = cost if best is None or cost[0] < best[0] else best
    assert best is not None
    return best


def cases(url: str) -> dict[str, Callable[[], Any]]:
    import psycopg
    import sqlalchemy as sa

    from floe_compute import create_plugin

    engine_url = sa.make_url(url).set(drivername="postgresql+psycopg")
    raw = psycopg.connect(engine_url.set(drivername="postgresql").render_as_string(hide_password=False))
    plain = sa.create_engine(engine_url, pool_size=4, max_overflow=0)
    pinged = sa.create_engine(engine_url, pool_size=4, max_overflow=0, pool_pre_ping=True)
    plugin = create_plugin(url, pool={"size": 4, "max_overflow": 0})
    query = sa.text("SELECT 1")

    def psycopg_client() -> None:
        with raw.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        raw.rollback()

    def psycopg_server() -> None:
        with raw.cursor(name="c") as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchmany(10000)
        raw.commit()

    def through(engine: Any, **options: Any) -> Callable[[], None]:
        def run() -> None:
            with engine.connect() as connection:
                connection.execution_options(**options).execute(query).fetchall()

        return run

    def through_plugin() -> None:
        with plugin.execute("SELECT 1") as result:
            result.fetchall()

    return {
        "psycopg, client-side cursor": psycopg_client,
        "psycopg, server-side cursor": psycopg_server,
        "sqlalchemy (as concurrency.py)": through(plain),
        "sqlalchemy + pool_pre_ping": through(pinged),
        "sqlalchemy + stream_results": through(plain, stream_results=True, max_row_buffer=10000),
        "sqlalchemy + both": through(pinged, stream_results=True, max_row_buffer=10000),
        "plugin": through_plugin,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from fixtures.postgres import PostgresServer

    with PostgresServer() as server:
        costs = {name: _cost(run, args.queries, args.repeat) for name, run in cases(server.url()).items()}
    base = costs["sqlalchemy (as concurrency.py)"][0]
    print(f"\nOne short read (SELECT 1) on PostgreSQL, one thread, best of {args.repeat} x {args.queries}\n")
    print(f"{'case':34} {'cpu us/q':>9} {'wall us/q':>10} {'cpu / sqlalchemy':>17}")
    for name, (cpu, wall) in costs.items():
        print(f"{name:34} {cpu:9.0f} {wall:10.0f} {cpu / base:16.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
