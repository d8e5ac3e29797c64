"""``floe-compute load``: Parquet, CSV and Arrow IPC files (and stdin) into a table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from floe_compute import create_plugin
from floe_compute.cli import main

DATA = pa.table({"id": [1, 2, 3], "name": ["a", "b", None]})


def write(path: Path) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(DATA, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(DATA, path)
    else:
        with pa.ipc.new_file(path, DATA.schema) as writer:
            writer.write_table(DATA)
    return path


def rows(url: str, table: str) -> list[tuple[object, ...]]:
    with create_plugin(url) as compute, compute.execute(f"SELECT * FROM {table} ORDER BY id") as result:
        return result.fetchall()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".arrow"])
def test_load_a_file_creates_then_appends(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    source = write(tmp_path / f"data{suffix}")
    assert main(["load", url, "t", str(source), "--mode", "create"]) == 0
    assert main(["load", url, "t", str(source)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("3 rows loaded into t")
    assert rows(url, "t") == sorted([(1, "a"), (2, "b"), (3, None)] * 2)


def test_load_reads_stdin_and_tells_its_format(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    source = write(tmp_path / "data.parquet").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "floe_compute.cli", "load", url, "t", "-", "--mode", "create"],
        input=source,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("3 rows loaded into t")
    assert rows(url, "t") == [(1, "a"), (2, "b"), (3, None)]


def test_load_with_unmatched_columns_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with create_plugin(url) as compute:
        compute.execute("CREATE TABLE t (id INTEGER)").close()
    assert main(["load", url, "t", str(write(tmp_path / "data.csv"))]) == 2
    assert "name" in capsys.readouterr().err
    assert rows(url, "t") == []
