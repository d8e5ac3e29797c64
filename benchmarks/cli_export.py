"""``make bench``: ``floe-compute query ... --format csv|parquet`` against DuckDB's own ``COPY``.

The query is the issue's: ``SELECT i, i / 7, chr(65 + i % 26) FROM range(N)`` (10 million rows by
default). Each contender runs as a fresh process, so both pay the interpreter's start:

* ``COPY (query) TO 'f.csv' (HEADER)`` and ``COPY (query) TO 'f.parquet' (FORMAT parquet)`` in
  DuckDB itself (``python -c "import duckdb; ..."``): the floor;
* ``floe-compute query duckdb:///:memory: QUERY --format csv|parquet --output FILE``.

Target: the CLI within 1.5x of ``COPY`` for each format, with flat memory (its peak RSS for N rows
about the same as for N/10: batches are streamed, never collected). Runs are interleaved and the
best of ``--repeat`` counts (noise on a shared machine only ever adds time); CPU time (user +
system, every thread) is printed beside wall time, as the steadier figure on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

CLI = [sys.executable, "-c", "from floe_compute.cli import run; run()"]
TARGET = 1.5


def sql(rows: int) -> str:
    return f"SELECT i, i / 7, chr(CAST(65 + i % 26 AS INTEGER)) FROM range({rows}) AS t(i)"


def copy_command(rows: int, path: Path, fmt: str) -> list[str]:
    options = "(FORMAT parquet)" if fmt == "parquet" else "(HEADER)"
    code = f"import duckdb; duckdb.connect().execute(\"COPY ({sql(rows)}) TO '{path}' {options}\")"
    return [sys.executable, "-c", code]


def cli_command(rows: int, path: Path, fmt: str) -> list[str]:
    return [*CLI, "query", "duckdb:///:memory:", sql(rows), "--format", fmt, "--output", str(path)]


def measure(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one process, its RSS sampled every 20 ms."""
    started = time.perf_counter()
    proc = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    cpu = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, cpu
        while not done.is_set():
            try:
                peak = max(peak, proc.memory_info().rss)
                times = proc.cpu_times()
                cpu = times.user + times.system
            except psutil.Error:
                return
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{command[:4]}... failed: {err.decode()[-500:]}")
    return wall, cpu, peak / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("FLOE_EXPORT_ROWS", 10_000_000)))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        print(f"CLI export of {args.rows:,} rows vs DuckDB COPY (best of {args.repeat}; target <= {TARGET}x)")
        for fmt in ("csv", "parquet"):
            best: dict[str, tuple[float, float, float]] = {}
            for _ in range(args.repeat):
                for name, make in (("copy", copy_command), ("cli", cli_command)):
                    result = measure(make(args.rows, out / f"{name}.{fmt}", fmt))
                    if name not in best or result[0] < best[name][0]:
                        best[name] = result
            small = measure(cli_command(args.rows // 10, out / f"small.{fmt}", fmt))
            (copy_wall, copy_cpu, copy_rss), (cli_wall, cli_cpu, cli_rss) = best["copy"], best["cli"]
            ratio = cli_wall / copy_wall
            verdict = "ok" if ratio <= TARGET else "SLOWER THAN TARGET"
            failed |= ratio > TARGET
            print(
                f"  {fmt:8} COPY {copy_wall:6.2f} s (cpu {copy_cpu:6.2f} s, {copy_rss:5.0f} MB)  "
                f"CLI {cli_wall:6.2f} s (cpu {cli_cpu:6.2f} s, {cli_rss:5.0f} MB)  "
                f"ratio {ratio:4.2f}x  {verdict}"
            )
            print(f"  {'':8} CLI peak RSS for {args.rows // 10:,} rows: {small[2]:5.0f} MB (stays flat)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
