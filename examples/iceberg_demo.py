"""The Iceberg part of the demo: a table written by pyiceberg, read through the DuckDB plugin.

Everything stays offline and under ``workdir``: a sqlite ``SqlCatalog`` with a local warehouse,
DuckDB's iceberg extension loaded from the ``duckdb-extension-iceberg`` package, and a local Iceberg
REST catalog (``fixtures/iceberg_rest.py``) standing in for Polaris, Glue or Nessie.

    .venv/bin/python examples/iceberg_demo.py [WORKDIR]
"""

from __future__ import annotations

import importlib.util
import secrets
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from floe_compute import create_plugin

ROOT = Path(__file__).resolve().parents[1]
FIRST, SECOND = 300_000, 200_000


def _say(text: str) -> None:
    print(f"   {text}", flush=True)


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.3f} s"


def _trips(start: int, count: int) -> pa.Table:
    ids = pa.array(range(start, start + count), pa.int64())
    return pa.table(
        {
            "trip_id": ids,
            "zone": pa.array([f"zone-{i % 12:02d}" for i in range(start, start + count)]),
            "fare": pa.array([round(3 + (i % 4000) / 100, 2) for i in range(start, start + count)]),
        }
    )


def iceberg_section(workdir: Path) -> None:
    """Build a two-snapshot Iceberg table, then query it by metadata file and through a catalog."""
    print("\n== 6. Iceberg: a table written by pyiceberg, read by DuckDB without any download")
    missing = [
        p
        for p in ("pyiceberg", "duckdb_extension_iceberg", "duckdb_extension_avro", "duckdb_extension_httpfs")
        if importlib.util.find_spec(p) is None
    ]
    if missing:
        _say(f"skipped: {', '.join(missing)} not installed (pip install 'floe-compute[iceberg]' pyiceberg)")
        return

    started = time.perf_counter()
    from pyiceberg.catalog.sql import SqlCatalog

    root = (workdir / "iceberg").resolve()
    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        "demo", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=(root / "warehouse").as_uri()
    )
    catalog.create_namespace_if_not_exists("demo")
    if catalog.table_exists("demo.trips"):
        catalog.drop_table("demo.trips")
    first = _trips(0, FIRST)
    table = catalog.create_table("demo.trips", schema=first.schema)
    table.append(first)
    first_snapshot = table.current_snapshot()
    assert first_snapshot is not None
    table.append(_trips(FIRST, SECOND))
    table = table.refresh()
    metadata = table.metadata_location.removeprefix("file://")
    _say(f"pyiceberg wrote demo.trips: {FIRST:,} + {SECOND:,} rows, 2 snapshots ({_since(started)})")

    extension_dir = workdir / "duckdb-extensions"
    started = time.perf_counter()
    with create_plugin(extensions=["iceberg"], extension_directory=extension_dir) as compute:
        _say(f"extensions installed from their packages and loaded in {_since(started)}")
        scan = f"iceberg_scan('{metadata}')"
        started = time.perf_counter()
        rows, fares = compute.execute(f"SELECT count(*), round(sum(fare), 2) FROM {scan}").fetchall()[0]
        _say(f"iceberg_scan(metadata file): {rows:,} rows, fares {fares:,} ({_since(started)})")
        travel = f"iceberg_scan('{metadata}', snapshot_from_id = {first_snapshot.snapshot_id})"
        (earlier,) = compute.execute(f"SELECT count(*) FROM {travel}").fetchall()[0]
        _say(f"time travel to the first snapshot: {earlier:,} rows")

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from fixtures.iceberg_rest import IcebergRestServer

    client_secret = secrets.token_urlsafe(16)
    with IcebergRestServer(catalog, client_id="demo", client_secret=client_secret) as server:
        lake = {
            "name": "lake",
            "endpoint": server.url,
            "warehouse": "demo",
            "client_id": "demo",
            "client_secret": client_secret,
        }
        started = time.perf_counter()
        with create_plugin(extension_directory=extension_dir, attach=[lake], pool={"size": 4}) as compute:
            _say(f"attached the REST catalog at {server.url} as 'lake' in {_since(started)}")
            started = time.perf_counter()
            sql = (
                "SELECT zone, count(*) AS n FROM lake.demo.trips GROUP BY zone ORDER BY n DESC, zone LIMIT 3"
            )
            top = compute.execute(sql).fetchall()
            _say(f"SELECT ... FROM lake.demo.trips: top zones {top} ({_since(started)})")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="floe-iceberg-") as tmp:
        iceberg_section(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp))
