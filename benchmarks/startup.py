"""``make bench``: how fast the CLI starts, against the floors set by Python and the dependencies.

* ``floe-compute --help`` and a usage error answer before any heavy import: target at most 4x a bare
  ``python -c pass``.
* ``floe-compute query duckdb:///:memory: "select 1"``: target at most 1.3x ``python -c "import
  sqlalchemy, duckdb"`` running the same query (what any tool built on them pays).
* The same query against a second floor, printed as its own line: what a SQLAlchemy user pays for
  it (``create_engine("duckdb:///:memory:")``, which loads duckdb-engine, connect, execute). The
  first floor leaves out duckdb-engine and pydantic, which the library is built on; this one
  shows what the library adds to the SQLAlchemy path it wraps.

Each command runs as a fresh process, interleaved with the others, ``--repeat`` times; the best
run counts (noise from the shared machine only ever adds time). The targets are judged on wall
time; each process's CPU time (user + system, all its threads) is printed beside it, since on a
loaded machine it is the steadier of the two (waiting for a core adds wall time, not CPU time).

Every command, the floors included, finds its modules' bytecode cached, as on any installed
system after the first run: a private cache directory, filled by one untimed round. Without it the
figures would depend on which ``__pycache__`` files a test run happened to leave behind
(``PYTHONDONTWRITEBYTECODE``, set in some sandboxes and CI images, makes every run compile every
source that has no cached bytecode).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what the installed console script runs (pyproject.toml: floe-compute = "floe_compute.cli:run")
CLI = [sys.executable, "-c", "from floe_compute.cli import run; run()"]
FLOOR_QUERY = "import sqlalchemy, duckdb; print(duckdb.connect(':memory:').execute('select 1').fetchall())"
SQLALCHEMY_QUERY = (
    "import sqlalchemy; sqlalchemy.create_engine('duckdb:///:memory:').connect().exec_driver_sql('select 1')"
)
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "floe-compute --help": [*CLI, "--help"],
    "floe-compute (usage error)": [*CLI, "query"],
    "floor: sqlalchemy + duckdb, select 1": [sys.executable, "-c", FLOOR_QUERY],
    "sqlalchemy create_engine, select 1": [sys.executable, "-c", SQLALCHEMY_QUERY],
    "floe-compute query ... select 1": [*CLI, "query", "duckdb:///:memory:", "select 1"],
}
HELP_RATIO_MAX = 4.0
QUERY_RATIO_MAX = 1.3


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def with_bytecode_cache(directory: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = directory
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    best = dict.fromkeys(COMMANDS, float("inf"))
    best_cpu = dict.fromkeys(COMMANDS, float("inf"))
    with tempfile.TemporaryDirectory(prefix="floe-bench-pycache-") as cache:
        env = with_bytecode_cache(cache)
        for command in COMMANDS.values():  # fills the bytecode cache; not timed
            timed(command, env)
        for _ in range(args.repeat):
            for name, command in COMMANDS.items():
                wall, cpu = timed(command, env)
                best[name] = min(best[name], wall)
                best_cpu[name] = min(best_cpu[name], cpu)
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(f"CLI start-up, best of {args.repeat} fresh processes (bytecode cached for every command):")
    print(f"  {'':<40} {'wall':>8}    {'cpu':>8}    (load average {load})")
    for name, seconds in best.items():
        print(f"  {name:<40} {seconds * 1000:8.1f} ms {best_cpu[name] * 1000:8.1f} ms")
    pairs = [
        ("--help / python -c pass", "floe-compute --help", "python -c pass", HELP_RATIO_MAX),
        ("usage error / python -c pass", "floe-compute (usage error)", "python -c pass", HELP_RATIO_MAX),
        (
            "query select 1 / dependency floor",
            "floe-compute query ... select 1",
            "floor: sqlalchemy + duckdb, select 1",
            QUERY_RATIO_MAX,
        ),
        (
            "query select 1 / sqlalchemy user floor",
            "floe-compute query ... select 1",
            "sqlalchemy create_engine, select 1",
            QUERY_RATIO_MAX,
        ),
    ]
    print("targets (wall time; the CPU-time ratio beside it):")
    failed = False
    for name, command, floor, limit in pairs:
        ratio = best[command] / best[floor]
        verdict = "PASS" if ratio <= limit else "FAIL"
        failed |= ratio > limit
        cpu_ratio = best_cpu[command] / best_cpu[floor]
        print(f"  {name:<40} {ratio:6.2f}x  (<= {limit:g}x)  {verdict}   cpu {cpu_ratio:5.2f}x")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
