"""``make bench`` draws its figures: one PNG per engine and one with every engine, next to the JSON
the benchmarks wrote, from the ratios of the plugin's wall time to each raw driver's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import plots

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _duckdb_results() -> dict[str, object]:
    walls = {"raw_arrow": 0.5, "plugin_arrow": 0.55, "raw_rows": 7.0, "plugin_rows": 7.7}
    results: dict[str, object] = {key: {"wall_s": wall} for key, wall in walls.items()}
    results["latency_plugin"] = {"latency_us": {"median": 700.0}}
    results["latency_sqlalchemy"] = {"latency_us": {"median": 600.0}}
    return {"results": results}


def test_bench_writes_a_png_per_engine_and_one_with_every_engine(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text(json.dumps(_duckdb_results()))
    plots.save_ratios("snowflake", [("Arrow batches / connector Arrow loop", 1.04, 1.1)], tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "plots.py"),
            "--results",
            str(tmp_path),
            "--copy-to",
            str(tmp_path / "docs"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in ("duckdb-ratios.png", "snowflake-ratios.png", "ratios.png", "docs/bench-ratios.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG), name
    assert "no results for bigquery, postgresql, spark" in done.stdout


def test_the_plotted_ratios_are_plugin_over_raw_driver(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text(json.dumps(_duckdb_results()))
    ratios = {name: round(value, 3) for name, value, _ in plots.collect(tmp_path)["duckdb"]}
    assert ratios["Arrow batches / duckdb Arrow reader"] == 1.1
    assert ratios["rows / duckdb fetchmany"] == 1.1
    assert ratios["SELECT 1 / pooled SQLAlchemy"] == round(700 / 600, 3)
