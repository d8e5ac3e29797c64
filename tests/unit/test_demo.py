"""``make demo`` runs examples/demo.py: it must do each step for real, and show it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float, Path]:
    data_dir = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard only: on a busy machine the demo may take minutes
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout, elapsed, data_dir


def section(output: str, number: str) -> str:
    match = re.search(rf"^== {re.escape(number)}\. .*?(?=^== |^demo finished|\Z)", output, re.M | re.S)
    assert match, f"no section {number} in:\n{output}"
    return match.group(0)


def count(text: str, pattern: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return int(match.group(1).replace(",", ""))


def test_builds_tables_in_a_duckdb_file(demo: tuple[str, float, Path]) -> None:
    output, _, data_dir = demo
    database = data_dir / "warehouse.duckdb"
    assert f"target: duckdb:///{database}" in output
    assert database.stat().st_size > 1_000_000
    built = section(output, "1")
    assert count(built, r"customers\s+([\d,]+) rows") == 100_000
    assert count(built, r"orders\s+([\d,]+) rows") == 3_000_000


def test_streams_millions_of_rows_as_arrow_batches(demo: tuple[str, float, Path]) -> None:
    arrow = section(demo[0], "2a")
    assert count(arrow, r"([\d,]+) rows in [\d.]+ s \([\d,]+ rows/s\)") == 3_000_000
    assert count(arrow, r"(\d+) batches") == 30
    assert count(arrow, r"largest ([\d,]+) rows") == 100_000
    # the figure summed from the Arrow batches equals the engine's own
    sums = re.search(r"from the batches ([\d,.]+) = from SQL ([\d,.]+)", arrow)
    assert sums and sums.group(1) == sums.group(2)


def test_streams_rows(demo: tuple[str, float, Path]) -> None:
    rows = section(demo[0], "2b")
    streamed = count(rows, r"([\d,]+) rows in [\d.]+ s \([\d,]+ rows/s\)")
    assert 1_900_000 < streamed < 2_100_000  # orders before September: 244/366 of 3,000,000
    regions = dict(re.findall(r"(EMEA|AMER|APAC) ([\d,]+)", rows))
    assert sum(int(n.replace(",", "")) for n in regions.values()) == streamed


def test_query_hits_its_timeout_and_is_cancelled(demo: tuple[str, float, Path]) -> None:
    timed_out = section(demo[0], "3")
    match = re.search(r"QueryTimeoutError after ([\d.]+) s", timed_out)
    assert match, timed_out
    elapsed = float(match.group(1))
    assert 0.45 <= elapsed < 5
    assert "timed out after" in timed_out
    assert "was cancelled on the engine" in timed_out
    assert "query timed out: engine='duckdb'" in timed_out  # the structured log record
    assert count(timed_out, r"SELECT count\(\*\) FROM orders -> ([\d,]+)") == 3_000_000


def test_pool_statistics_and_health(demo: tuple[str, float, Path]) -> None:
    pool = section(demo[0], "4")
    assert count(pool, r"([\d,]+) orders") == 3_000_000
    assert 2 <= count(pool, r"in use at once, at most: (\d+)") <= 6
    assert "pool: size=4 max=6" in pool
    assert count(pool, r"in_use=(\d+)") == 0
    assert count(pool, r"checkouts=(\d+)") >= 12
    assert count(pool, r"connects=(\d+)") >= 2
    assert "health: healthy" in pool


def test_dbt_profile_for_the_same_target(demo: tuple[str, float, Path]) -> None:
    output, _, data_dir = demo
    text = section(output, "5").split("\n", 1)[1]
    profile = yaml.safe_load("\n".join(line[3:] for line in text.splitlines()))
    target = profile["floe"]["outputs"][profile["floe"]["target"]]
    assert target["type"] == "duckdb"
    assert target["path"] == str((data_dir / "warehouse.duckdb").resolve())


def test_demo_reports_its_run_time(demo: tuple[str, float, Path]) -> None:
    """How fast it is belongs in ``make bench``; here only that it says how long it took."""
    reported = re.search(r"^demo finished in ([\d.]+) s$", demo[0], re.M)
    assert reported, demo[0]
    assert 0 < float(reported.group(1)) <= demo[1]
