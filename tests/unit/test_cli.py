"""The floe-compute command, run for real against DuckDB: what a user sees on stdout, stderr and
in the exit status."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from floe_compute import list_plugins
from floe_compute.cli import main
from floe_compute.registry import get_plugin_class

TIMEOUT_SQL = "SELECT count(*) FROM range(10000000000)"


def run(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in its own process (stderr is not a terminal here)."""
    return subprocess.run(
        [sys.executable, "-m", "floe_compute.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("floe-compute: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        """
        CREATE TABLE orders (id INTEGER, customer VARCHAR, amount DECIMAL(10, 2), day DATE, note VARCHAR);
        INSERT INTO orders VALUES
            (1, 'alice', 12.50, DATE '2024-01-02', NULL),
            (2, 'bob', 7.25, DATE '2024-01-03', 'gift, wrapped'),
            (3, 'carol "cc"', 100.00, DATE '2024-02-01', 'two
lines');
        """
    )
    con.close()
    return path


@pytest.fixture
def url(warehouse: Path) -> str:
    return f"duckdb:///{warehouse}"


ORDERS_SQL = "SELECT id, customer, amount, day, note FROM orders ORDER BY id"


# -- query: output formats -----------------------------------------------------------------------


def test_csv_output_is_parseable_csv_with_a_header(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", url, ORDERS_SQL, "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert list(csv.reader(io.StringIO(out))) == [
        ["id", "customer", "amount", "day", "note"],
        ["1", "alice", "12.50", "2024-01-02", ""],
        ["2", "bob", "7.25", "2024-01-03", "gift, wrapped"],
        ["3", 'carol "cc"', "100.00", "2024-02-01", "two\nlines"],
    ]


def test_jsonl_output_is_one_object_per_row(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", url, ORDERS_SQL, "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "customer": "alice", "amount": "12.50", "day": "2024-01-02", "note": None},
        {"id": 2, "customer": "bob", "amount": "7.25", "day": "2024-01-03", "note": "gift, wrapped"},
        {"id": 3, "customer": 'carol "cc"', "amount": "100.00", "day": "2024-02-01", "note": "two\nlines"},
    ]


def test_table_output_is_aligned_with_a_row_count(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", url, ORDERS_SQL]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "id  customer    amount  day         note",
        "--  ----------  ------  ----------  -------------",
        " 1  alice        12.50  2024-01-02  NULL",
        " 2  bob           7.25  2024-01-03  gift, wrapped",
        ' 3  carol "cc"  100.00  2024-02-01  two\\nlines',
        "(3 rows)",
    ]


def test_table_widths_come_from_the_first_batch(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT * FROM (VALUES ('a', 1), ('bb', 2), ('a much longer value', 3)) t(s, n) ORDER BY n"
    assert main(["query", url, sql, "--batch-size", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "s   n",
        "--  -",
        "a   1",
        "bb  2",
        "a much longer value  3",
        "(3 rows)",
    ]


def test_empty_result_and_ddl(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", url, "SELECT id FROM orders WHERE false"]) == 0
    assert capsys.readouterr().out.splitlines() == ["id", "--", "(0 rows)"]
    assert main(["query", url, "CREATE TABLE t2 AS SELECT 42 AS answer"]) == 0
    assert capsys.readouterr().out.splitlines() == ["Count", "-----", "    1", "(1 row)"]
    # the statement was committed to the file
    assert main(["query", url, "SELECT answer FROM t2", "-f", "csv"]) == 0
    assert capsys.readouterr().out == "answer\n42\n"


def test_batch_size_does_not_change_the_output(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT range AS n, range * 2 AS m FROM range(1000)"
    assert main(["query", url, sql, "-f", "csv"]) == 0
    default = capsys.readouterr().out
    assert main(["query", url, sql, "-f", "csv", "--batch-size", "7"]) == 0
    assert capsys.readouterr().out == default
    assert default.count("\n") == 1001


def test_sql_from_stdin(url: str) -> None:
    proc = run("query", url, "-", "--format", "csv", stdin="SELECT count(*) AS n FROM orders")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "n\n3\n"


def test_manifest_target_name(tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {"compute": {"default": "local", "targets": {"local": {"url": f"duckdb:///{warehouse}"}}}}
        )
    )
    sql = "SELECT count(*) AS n FROM orders"
    assert main(["query", "local", sql, "-f", "csv", "--manifest", str(manifest)]) == 0
    assert capsys.readouterr().out == "n\n3\n"

    assert main(["dbt-profile", "local", "--manifest", str(manifest)]) == 0
    profile = yaml.safe_load(capsys.readouterr().out)
    assert profile["floe"]["target"] == "local"  # the manifest's target name
    assert profile["floe"]["outputs"]["local"]["path"] == str(warehouse.resolve())

    assert main(["query", "nosuch", "SELECT 1", "--manifest", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "nosuch", "local")


# -- query: failures -----------------------------------------------------------------------------


def test_unknown_scheme_exits_2_with_one_line(url: str) -> None:
    proc = run("query", "nope://somewhere/db", "SELECT 1")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, "'nope'", "duckdb")


def test_target_name_without_manifest_exits_2() -> None:
    proc = run("query", "warehouse", "SELECT 1")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "'warehouse'", "manifest")


def test_unreadable_database_exits_1(tmp_path: Path) -> None:
    proc = run("query", f"duckdb:///{tmp_path}/no/such/dir/x.duckdb", "SELECT 1")
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "no/such/dir/x.duckdb")


def test_bad_sql_exits_1_naming_the_table(url: str) -> None:
    proc = run("query", url, "SELECT * FROM no_such_table")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, "no_such_table")


def test_timeout_exits_3_and_cancels_promptly(url: str) -> None:
    proc = run("query", url, TIMEOUT_SQL, "--timeout", "0.3", timeout=300)
    assert proc.returncode == 3
    assert_one_line_error(proc.stderr, "timed out", "timeout 0.3s")
    # the query's own elapsed time, not the interpreter's start-up: cancelled on the engine, not
    # run to completion (minutes)
    elapsed = re.search(r"timed out after ([\d.]+)\s?s", proc.stderr)
    assert elapsed, proc.stderr
    assert float(elapsed.group(1)) < 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0"], "--timeout/-t: must be greater than 0"),
        (["--timeout", "soon"], "--timeout/-t: expected a number of seconds"),
        (["--batch-size", "-5"], "--batch-size: must be greater than 0"),
        (["--format", "xml"], "--format/-f: invalid choice: 'xml'"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["query", "duckdb:///:memory:", "SELECT 1", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"floe-compute {version('floe-compute')}\n"


def test_missing_or_empty_sql_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "duckdb:///:memory:"]) == 2  # SQL is optional only with --file
    assert_one_line_error(capsys.readouterr().err, "SQL", "--file")
    assert main(["query", "duckdb:///:memory:", "   "]) == 2
    assert_one_line_error(capsys.readouterr().err, "empty")


# -- query: streaming, progress, pipes, Ctrl-C ---------------------------------------------------


def slow_reader(*args: str, stderr: Any = subprocess.PIPE) -> tuple[subprocess.Popen[str], str, float]:
    """Start a query, read its header, hold stdout up for 2 s (a long run), then read the rest.

    Returns the process, its stdout, and an upper bound of how long the query ran.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "floe_compute.cli", "query", "duckdb:///:memory:", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    header = proc.stdout.readline()
    time.sleep(2.0)
    rest = proc.stdout.read()
    proc.wait(timeout=60)
    return proc, header + rest, time.monotonic() - started


def test_progress_line_on_stderr_for_a_long_stream() -> None:
    proc, out, elapsed = slow_reader("SELECT * FROM range(300000)", "-f", "csv", "--progress")
    assert proc.returncode == 0
    assert out.count("\n") == 300_001
    assert proc.stderr is not None
    lines = proc.stderr.read().splitlines()
    # after the first second, at most every 0.5 s: one line per update when stderr is not a terminal
    assert 1 <= len(lines) <= 1 + (elapsed - 1.0) / 0.5, lines
    for line in lines:
        assert re.fullmatch(r"[\d,]+ rows  [\d,]+ rows/s  \d+\.\ds", line), line


def test_no_progress_when_stderr_is_not_a_terminal() -> None:
    proc, out, _ = slow_reader("SELECT * FROM range(300000)", "-f", "csv")
    assert proc.returncode == 0
    assert out.count("\n") == 300_001
    assert proc.stderr is not None
    assert proc.stderr.read() == ""


def test_progress_on_a_terminal_is_redrawn_in_place_and_cleared() -> None:
    controller, terminal = pty.openpty()
    try:
        proc, out, _ = slow_reader("SELECT * FROM range(300000)", "-f", "csv", stderr=terminal)
        os.close(terminal)
        terminal = -1
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the child is gone
            while chunk := os.read(controller, 65536):
                seen += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0
    assert out.count("\n") == 300_001
    text = seen.decode()
    assert "rows/s" in text
    assert "\n" not in text  # one line, redrawn with \r
    assert text.startswith("\r")
    assert text.endswith("\r\x1b[K")  # erased at the end


def test_rows_are_streamed_before_the_query_ends() -> None:
    """The first rows reach the reader while the engine is still producing the rest."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "floe_compute.cli", "query", "duckdb:///:memory:",
         "SELECT * FROM range(1000000000)", "-f", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "range\n"
        assert proc.stdout.readline() == "0\n"
        assert proc.poll() is None  # a billion rows: still running, nothing was collected first
    finally:
        proc.kill()
        proc.communicate()


def test_closed_stdout_pipe_is_quiet() -> None:
    """``floe-compute query ... | head -2``: no traceback, no error line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "floe_compute.cli", "query", "duckdb:///:memory:",
         "SELECT * FROM range(5000000)", "-f", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "range\n"
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


def test_shell_pipe_into_head() -> None:
    cmd = (
        f"{sys.executable} -m floe_compute.cli query duckdb:///:memory: "
        "'SELECT * FROM range(5000000)' --format jsonl | head -n 2"
    )
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout == '{"range": 0}\n{"range": 1}\n'
    assert proc.stderr == ""


def test_ctrl_c_exits_130_without_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "floe_compute.cli", "query", "duckdb:///:memory:", TIMEOUT_SQL, "--progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        # the first progress line: the statement is running on the engine (in running_queries())
        assert "rows/s" in proc.stderr.readline()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "floe-compute: error: interrupted" in rest
    assert "Traceback" not in rest
    # 1 s is the target; the bound leaves room for a loaded machine, and still fails when the
    # query is left to run to its end (minutes) instead of being cancelled
    assert took < 10, f"exited {took:.2f} s after Ctrl-C"


# -- health, dbt-profile, plugins ----------------------------------------------------------------


def test_health_text(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", url]) == 0
    out = capsys.readouterr().out
    assert "status:  healthy" in out
    assert "message: ok" in out
    assert "pool:    size=5 max=15" in out


def test_health_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", url, "--json"]) == 0
    status: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert status["status"] == "healthy"
    assert status["healthy"] is True
    assert status["latency_ms"] >= 0
    assert status["pool"]["checkouts"] >= 1
    assert status["pool"]["in_use"] == 0


def test_health_unreachable_is_unhealthy_exit_1(tmp_path: Path) -> None:
    proc = run("health", f"duckdb:///{tmp_path}/missing/dir/db.duckdb", "--json")
    assert proc.returncode == 1
    status = json.loads(proc.stdout)
    assert status["status"] == "unhealthy"
    assert "cannot open" in status["message"]
    assert "Traceback" not in proc.stderr


def test_health_bad_url_exits_2() -> None:
    proc = run("health", "nope://x")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "'nope'")


def test_dbt_profile(url: str, warehouse: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dbt-profile", url]) == 0
    profile = yaml.safe_load(capsys.readouterr().out)
    assert profile["floe"]["target"] == "dev"
    output = profile["floe"]["outputs"]["dev"]
    assert output["type"] == "duckdb"
    assert output["path"] == str(warehouse.resolve())

    assert main(["dbt-profile", url, "--profile", "analytics", "--target", "ci"]) == 0
    profile = yaml.safe_load(capsys.readouterr().out)
    assert list(profile) == ["analytics"]
    assert profile["analytics"]["target"] == "ci"
    assert profile["analytics"]["outputs"]["ci"]["type"] == "duckdb"


def test_plugins_lists_every_installed_plugin_with_its_schemes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list_plugins())
    for line, name in zip(lines, list_plugins(), strict=True):
        assert line.split()[0] == name
        for scheme in get_plugin_class(name).schemes:
            assert f"{scheme}://" in line
    assert any(line.split()[:2] == ["duckdb", "duckdb://"] for line in lines)

    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {p["name"]: p["schemes"] for p in listing}["duckdb"] == ["duckdb"]


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "floe-compute"
    assert script.exists(), "installing floe-compute puts the floe-compute script next to python"
    proc = subprocess.run(
        [str(script), "query", "duckdb:///:memory:", "SELECT 1 AS one", "-f", "csv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "one\n1\n"
