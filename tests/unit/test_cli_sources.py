"""``floe-compute query`` as psql, duckdb and sqlite3 users expect it: SQL from a file or stdin,
quiet ``-v``, and errors that say how to write what was meant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from floe_compute.cli import main


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floe_compute.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sql_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = tmp_path / "q.sql"
    query.write_text("-- the answer\nSELECT 42 AS answer\n")
    assert main(["query", "duckdb:///:memory:", "--file", str(query), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "answer\n42\n"


def test_sql_from_stdin_with_file_dash() -> None:
    done = run("query", "duckdb:///:memory:", "--file", "-", "--format", "csv", stdin="SELECT 7 AS n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "n\n7\n"


def test_a_sql_argument_that_names_a_file_gets_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "q.sql").write_text("SELECT 1")
    monkeypatch.chdir(tmp_path)
    assert main(["query", "duckdb:///:memory:", "q.sql"]) == 2
    err = capsys.readouterr().err
    assert "--file q.sql" in err


def test_file_and_sql_together_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = tmp_path / "q.sql"
    query.write_text("SELECT 1")
    assert main(["query", "duckdb:///:memory:", "SELECT 2", "--file", str(query)]) == 2
    assert "either SQL or --file" in capsys.readouterr().err


def test_a_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "duckdb:///:memory:", "--file", str(tmp_path / "nope.sql")]) == 2
    assert "nope.sql" in capsys.readouterr().err


def test_help_says_what_f_means_and_why() -> None:
    done = run("query", "--help")
    assert "--file FILE" in done.stdout
    assert "psql" in done.stdout  # -f is --format here, and the help says why


def test_verbose_shows_no_pool_chatter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "-v", "duckdb:///:memory:", "SELECT 1 AS x", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "x\n1\n"
    assert "Pool" not in captured.err, captured.err


@pytest.mark.parametrize(
    ("value", "hint"),
    [("0", "leave out --timeout"), ("5s", "such as 5 or 0.5"), ("none", "leave out --timeout")],
)
def test_timeout_errors_say_how_to_write_it(value: str, hint: str) -> None:
    done = run("query", "duckdb:///:memory:", "SELECT 1", "--timeout", value)
    assert done.returncode == 2
    assert hint in done.stderr, done.stderr
