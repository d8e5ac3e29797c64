"""The command line under abuse: values JSON cannot hold, duplicate column names, a closed stdout,
Ctrl-C during start-up and while a query runs. Each ends with its documented exit status and one
line on stderr."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from floe_compute.cli import main, unique_columns

SCRIPT = shutil.which("floe-compute") or str(Path(sys.executable).with_name("floe-compute"))
ENDLESS = "SELECT count(*) FROM range(100000000000)"


def _one_line(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("floe-compute: error: "), stderr
    assert all(fragment in lines[0] for fragment in fragments), stderr


def test_jsonl_writes_null_for_nan_and_infinity(capsys: pytest.CaptureFixture[str]) -> None:
    sql = (
        "SELECT 'nan'::DOUBLE AS n, 'inf'::DOUBLE AS i, '-inf'::DOUBLE AS m, "
        "[1.5, 'nan'::DOUBLE] AS l, 2.5::DOUBLE AS f"
    )
    assert main(["query", "duckdb:///:memory:", sql, "--format", "jsonl"]) == 0
    line = capsys.readouterr().out
    record = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert record == {"n": None, "i": None, "m": None, "l": [1.5, None], "f": 2.5}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_duplicate_column_names_are_made_unique(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "duckdb:///:memory:", "SELECT 1 a, 2 a, 3 a_1, 4 a", "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "jsonl":
        assert json.loads(out) == {"a": 1, "a_1": 2, "a_1_1": 3, "a_2": 4}
    else:
        assert out.splitlines()[0].replace(",", " ").split() == ["a", "a_1", "a_1_1", "a_2"]


def test_unique_columns() -> None:
    assert unique_columns(["a", "a", "b", "a"]) == ["a", "a_1", "b", "a_2"]
    assert unique_columns([]) == []


def test_closed_stdout_is_one_line_and_exit_1() -> None:
    proc = subprocess.run(
        f"'{SCRIPT}' query duckdb:///:memory: 'SELECT 1' >&-",
        shell=True,
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    _one_line(proc.stderr, "standard output is closed")


def test_ctrl_c_during_start_up(tmp_path: Path) -> None:
    """SIGINT arrives while the library is still being imported (at SQLAlchemy's import)."""
    script = tmp_path / "start.py"
    script.write_text(
        textwrap.dedent(
            """
            import importlib.abc, os, signal, sys

            class InterruptAtImport(importlib.abc.MetaPathFinder):
                def find_spec(self, name, path, target=None):
                    if name == "sqlalchemy":
                        sys.meta_path.remove(self)
                        os.kill(os.getpid(), signal.SIGINT)
                    return None

            sys.meta_path.insert(0, InterruptAtImport())
            from floe_compute.cli import main
            sys.exit(main(["query", "duckdb:///:memory:", "SELECT 1"]))
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 130
    _one_line(proc.stderr, "interrupted")
    assert proc.stdout == ""


def _running_query() -> subprocess.Popen[str]:
    """The console script running a query that would take minutes, once it shows as running."""
    proc = subprocess.Popen(
        [SCRIPT, "query", "duckdb:///:memory:", ENDLESS, "--progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    # the progress line appears only once the query runs (it is in plugin.running_queries())
    assert "rows/s" in proc.stderr.readline()
    return proc


def test_ctrl_c_while_a_query_runs_stops_it_promptly() -> None:
    proc = _running_query()
    try:
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130
    lines = [line for line in rest.splitlines() if "rows/s" not in line]
    _one_line("\n".join(lines), "interrupted", "cancelled on the engine")
    # the target is 1 s; the bound leaves room for a loaded machine while still telling a
    # cancelled query from one left to run (minutes)
    assert took < 10, f"exit took {took:.2f} s after Ctrl-C"


def test_second_ctrl_c_exits_at_once() -> None:
    proc = _running_query()
    try:
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    errors = [line for line in rest.splitlines() if "rows/s" not in line]
    assert errors and all(line.startswith("floe-compute: error: interrupted") for line in errors), rest
    assert "Traceback" not in rest
