"""``floe-compute query`` output formats, written from the Arrow batches: typed values, NULL
distinct from the empty string and from the text 'NULL', wide characters aligned, a page on a
terminal, and Parquet to a file."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
import time
import unicodedata
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from floe_compute.cli import main

URL = "duckdb:///:memory:"
TYPED = (
    "SELECT 1 AS i, '' AS empty, NULL::VARCHAR AS nothing, "
    "12345678901234567890.123456789::DECIMAL(38, 9) AS exact, "
    "TIMESTAMP '2024-01-02 03:04:05.5' AS ts, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS tstz, "
    "INTERVAL '1 year 2 months 3 days 04:05:06.5' AS span, '\\xAA\\x00\\xFF'::BLOB AS raw"
)


def query(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["query", URL, *args]) == 0
    return capsys.readouterr().out


def test_csv_tells_null_from_the_empty_string(capsys: pytest.CaptureFixture[str]) -> None:
    out = query(capsys, "SELECT NULL::VARCHAR AS a, '' AS b, 'x' AS c", "-f", "csv")
    assert out == 'a,b,c\n,"","x"\n'


def test_csv_and_tsv_write_typed_values(capsys: pytest.CaptureFixture[str]) -> None:
    expected = {
        "i": "1",
        "empty": "",
        "nothing": "",
        "exact": "12345678901234567890.123456789",
        "ts": "2024-01-02T03:04:05.500000",
        "tstz": "2024-01-02T03:04:05.000000+00:00",
        "span": "P1Y2M3DT4H5M6.5S",
        "raw": "qgD/",
    }
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        (row,) = csv.DictReader(io.StringIO(query(capsys, TYPED, "-f", fmt)), delimiter=delimiter)
        assert row == expected


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_formats_write_typed_values(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """From the driver's Python values (no pyarrow on this path): an interval is the driver's
    ``timedelta``, which has no months (DuckDB counts one as 30 days)."""
    out = query(capsys, TYPED, "-f", fmt)
    records = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
    assert records == [
        {
            "i": 1,
            "empty": "",
            "nothing": None,
            "exact": "12345678901234567890.123456789",
            "ts": "2024-01-02T03:04:05.500000",
            "tstz": "2024-01-02T03:04:05+00:00",
            "span": "P423DT4H5M6.5S",
            "raw": "qgD/",
        }
    ]


def test_json_of_an_empty_result_is_an_empty_array(capsys: pytest.CaptureFixture[str]) -> None:
    assert json.loads(query(capsys, "SELECT 1 AS a WHERE false", "-f", "json")) == []


def test_parquet_to_a_file_keeps_the_types(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.parquet"
    sql = "SELECT i, i / 7 AS ratio, CAST(i AS DECIMAL(10, 2)) AS amount FROM range(25000) AS t(i)"
    assert main(["query", URL, sql, "-f", "parquet", "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    table = pq.read_table(target)
    assert table.num_rows == 25000
    assert table.schema.field("i").type == pa.int64()
    assert table.schema.field("amount").type == pa.decimal128(10, 2)
    assert table.column("amount")[3].as_py() == Decimal("3.00")


def test_parquet_row_groups_gather_the_engines_batches(tmp_path: Path) -> None:
    # a row group per batch of 1,000 rows would make a file slow to write and to read
    target = tmp_path / "out.parquet"
    sql = "SELECT i, i / 7 AS ratio FROM range(25000) AS t(i)"
    assert main(["query", URL, sql, "-f", "parquet", "--batch-size", "1000", "--output", str(target)]) == 0
    metadata = pq.ParquetFile(target).metadata
    assert (metadata.num_rows, metadata.num_row_groups) == (25000, 1)
    assert pq.read_table(target).column("i").to_pylist() == list(range(25000))


def test_parquet_row_groups_of_wide_rows_stop_at_their_byte_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what one row group gathers in memory is bounded in bytes too, not only in rows
    from floe_compute.cli import output

    monkeypatch.setattr(output, "ROW_GROUP_BYTES", 500_000)  # 64 MB of wide rows, scaled down
    target = tmp_path / "out.parquet"
    sql = "SELECT i, repeat('x', 100) AS wide FROM range(25000) AS t(i)"
    assert main(["query", URL, sql, "-f", "parquet", "--batch-size", "1000", "--output", str(target)]) == 0
    metadata = pq.ParquetFile(target).metadata
    assert metadata.num_rows == 25000
    assert 1 < metadata.num_row_groups < 25
    assert pq.read_table(target).column("i").to_pylist() == list(range(25000))


def test_parquet_of_no_rows_still_names_the_columns(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    sql = "SELECT 1 AS a, 'x' AS b WHERE false"
    assert main(["query", URL, sql, "-f", "parquet", "-o", str(target)]) == 0
    table = pq.read_table(target)
    assert (table.num_rows, table.column_names) == (0, ["a", "b"])


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_table_aligns_wide_characters(capsys: pytest.CaptureFixture[str]) -> None:
    out = query(capsys, "SELECT * FROM (VALUES ('漢字テキスト', 1), ('ab', 22)) AS t(s, n)")
    rule_and_rows = out.splitlines()[1:4]  # the numbers are right-aligned to the rule's end
    assert len({_display_width(line) for line in rule_and_rows}) == 1, rule_and_rows


def test_table_tells_null_from_the_text_null(capsys: pytest.CaptureFixture[str]) -> None:
    out = query(capsys, "SELECT NULL::VARCHAR AS a, 'NULL' AS b")
    assert out.splitlines()[2].split() == ["NULL", "'NULL'"]


def _on_a_terminal(*args: str) -> str:
    """The command with its stdout on a terminal (a pty of 24 lines), as a user sees it."""
    leader, follower = pty.openpty()
    env = {**os.environ, "LINES": "24", "COLUMNS": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "floe_compute.cli", "query", URL, *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process ended and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_a_terminal_gets_a_page_unless_asked_for_all() -> None:
    sql = "SELECT i FROM range(100000) AS t(i)"
    page = _on_a_terminal(sql, "--no-progress").splitlines()
    assert len(page) <= 24
    assert "--all" in page[-1]
    every = _on_a_terminal(sql, "--no-progress", "--all").splitlines()
    assert every[-1] == "(100,000 rows)"


def test_parquet_is_not_written_to_a_terminal() -> None:
    out = _on_a_terminal_status("SELECT 1", "-f", "parquet")
    assert out == 2


def _on_a_terminal_status(*args: str) -> int:
    leader, follower = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "floe_compute.cli", "query", URL, *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    os.close(follower)
    os.close(leader)
    return done.returncode
