"""The demo's Iceberg section runs offline and shows the rows it read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.slow, pytest.mark.xdist_group("iceberg")]

DEMO = Path(__file__).resolve().parents[2] / "examples" / "iceberg_demo.py"


def test_iceberg_demo_section(extension_dir: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(DEMO), str(tmp_path)], capture_output=True, text=True, timeout=180, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "skipped" not in out
    assert "iceberg_scan(metadata file): 500,000 rows" in out
    assert "time travel to the first snapshot: 300,000 rows" in out
    assert "top zones [('zone-00', 41667)" in out
    assert list((tmp_path / "duckdb-extensions").rglob("iceberg.duckdb_extension"))
