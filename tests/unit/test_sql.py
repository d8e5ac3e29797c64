"""Statement classification, splitting and placeholders on SQL that users really write."""

from __future__ import annotations

import pytest

from floe_compute.engines.postgres import returns_cursor
from floe_compute.sql import (
    bind_names,
    bindable_text,
    declarable,
    operation_name,
    returns_rows,
    split_statements,
    statement_count,
    summarize,
)


@pytest.mark.parametrize(
    ("sql", "dialect", "operation"),
    [
        ("SELECT 1", None, "SELECT"),
        ("  /* hint */ (SELECT 1) UNION (SELECT 2)", "postgres", "SELECT"),
        ("WITH x AS (SELECT 3 AS id) INSERT INTO t SELECT id FROM x", "postgres", "INSERT"),
        ("WITH d AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM d)", "postgres", "DELETE"),
        ("CREATE OR REPLACE TABLE t AS SELECT 1", "duckdb", "CREATE TABLE"),
        ("CREATE OR REPLACE TEMPORARY SECRET s (TYPE iceberg, TOKEN 'x')", "duckdb", "CREATE SECRET"),
        ("drop view v", "duckdb", "DROP VIEW"),
        ("EXPLAIN SELECT 1", "postgres", "EXPLAIN"),
        ("-- leading comment\nUPDATE t SET a = 1", "postgres", "UPDATE"),
        ("not sql at all ((", None, "NOT"),
        ("", None, "UNKNOWN"),
    ],
)
def test_operation_name(sql: str, dialect: str | None, operation: str) -> None:
    assert operation_name(sql, dialect) == operation


@pytest.mark.parametrize(
    ("sql", "dialect", "summary"),
    [
        (
            "SELECT * FROM orders o JOIN customers c ON o.c = c.id WHERE o.n = 'x'",
            "postgres",
            "SELECT orders customers",
        ),
        ("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", "postgres", "SELECT orders"),
        ("INSERT INTO sales.orders SELECT * FROM staging", "duckdb", "INSERT sales.orders staging"),
        ("SELECT * FROM range(10)", "duckdb", "SELECT range"),
        ("CREATE SECRET s (TYPE s3, KEY_ID 'AKIA', SECRET 'hunter2')", "duckdb", "CREATE SECRET"),
        ("SET LOCAL statement_timeout = 5", "postgres", "SET"),
        ("SELECT 'FROM secret_table' AS s", "postgres", "SELECT"),
    ],
)
def test_summary_never_holds_literals(sql: str, dialect: str | None, summary: str) -> None:
    assert summarize(sql, dialect) == summary


def test_summary_is_bounded() -> None:
    sql = "SELECT * FROM " + ", ".join(f"table_{i}" for i in range(200))
    assert len(summarize(sql)) <= 255


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT 1", True),
        ("VALUES (1), (2)", True),
        ("TABLE t", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x FOR UPDATE", True),
        ("SELECT 1 AS a INTO t_new", False),
        ("INSERT INTO t VALUES (1)", False),
        ("INSERT INTO t VALUES (1) RETURNING id", True),
        ("SHOW search_path", True),
        ("EXPLAIN SELECT 1", True),
        ("CREATE TABLE t (a int)", False),
        ("SET statement_timeout = 5", False),
    ],
)
def test_returns_rows(sql: str, rows: bool) -> None:
    assert returns_rows(sql, "postgres") is rows


@pytest.mark.parametrize(
    ("sql", "ok"),
    [
        ("/* a */ (SELECT 1)", True),
        ("VALUES (1)", True),
        ("SELECT 1 AS a INTO t_new", False),  # DECLARE ... FOR SELECT INTO is an error
        ("WITH x AS (SELECT * FROM t) SELECT * FROM x FOR UPDATE", True),
        ("WITH x AS (SELECT 1 AS update) SELECT update FROM x", True),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", False),
        ("WITH x AS (SELECT '--' AS a), d AS (DELETE FROM t RETURNING a) SELECT * FROM d", False),
        ("WITH x AS (SELECT '/*' AS a), d AS (DELETE FROM t RETURNING a) SELECT * FROM d", False),
        ("WITH x AS (SELECT $$ DELETE ' $$ AS a) SELECT a FROM x", True),
        ("/* outer /* inner */ DELETE */ WITH x AS (SELECT 1 AS a) SELECT a FROM x", True),
        ("WITH x AS (SELECT 'insert into' AS s) SELECT s FROM x", True),
        ("SELECT 1; SELECT 2", False),
        ("CREATE TABLE t AS SELECT 1", False),
        ("SHOW search_path", False),
    ],
)
def test_postgres_cursor_decision(sql: str, ok: bool) -> None:
    assert declarable(sql, "postgres") is ok
    assert returns_cursor(sql) is ok


@pytest.mark.parametrize(
    ("sql", "dialect", "statements"),
    [
        ("SELECT 1", None, ["SELECT 1"]),
        ("SELECT 1;", None, ["SELECT 1"]),
        ("SELECT 1; SELECT 2;", "duckdb", ["SELECT 1", "SELECT 2"]),
        ("SELECT ';' AS a; -- done;\n", "duckdb", ["SELECT ';' AS a"]),
        ("SELECT $$ a ; b $$", "postgres", ["SELECT $$ a ; b $$"]),
        (
            "SELECT 1 /* nested /* ; */ still */ ; SELECT 2",
            "postgres",
            ["SELECT 1 /* nested /* ; */ still */", "SELECT 2"],
        ),
        (
            "CREATE SECRET s (TYPE s3, SECRET 'a;b'); SELECT 1",
            "duckdb",
            ["CREATE SECRET s (TYPE s3, SECRET 'a;b')", "SELECT 1"],
        ),
        ("; ; -- nothing\n", None, []),
        ("SELECT 'unterminated ; SELECT 2", None, ["SELECT 'unterminated ; SELECT 2"]),
    ],
)
def test_split_and_count(sql: str, dialect: str | None, statements: list[str]) -> None:
    assert split_statements(sql, dialect) == statements
    assert statement_count(sql, dialect) == len(statements)


@pytest.mark.parametrize(
    ("sql", "dialect", "names"),
    [
        ("SELECT 'meet at 10 :30'", "duckdb", []),
        ("SELECT ':x'", "duckdb", []),
        ("SELECT {'a': 1}", "duckdb", []),
        ("SELECT {a: 1}", "duckdb", []),
        ("SELECT :x, :y, :x", None, ["x", "y"]),
        ("SELECT a::int, :v::text FROM t WHERE b = :w", "postgres", ["v", "w"]),
        ('SELECT ":q" FROM t -- :c\n/* :d */ WHERE e = :e', "postgres", ["e"]),
        ("SELECT arr[1:2], $$ :dollar $$, E'it\\'s :e' FROM t", "postgres", []),
        ("SELECT `:bq`, ':\\' :s' FROM t WHERE x = :real", "bigquery", ["real"]),
        ("SELECT 'it\\'s; :x' FROM t WHERE y = :y", "snowflake", ["y"]),
    ],
)
def test_bind_names_are_only_real_placeholders(sql: str, dialect: str | None, names: list[str]) -> None:
    assert bind_names(sql, dialect) == names


def test_bindable_text_escapes_every_colon_that_is_not_a_placeholder() -> None:
    from sqlalchemy import text

    sql = "SELECT 'meet at 10 :30' AS s, :x AS x /* :z */, ':y' AS y"
    clause = text(bindable_text(sql, "duckdb"))
    assert set(clause.compile().params) == {"x"}
    assert "'meet at 10 :30'" in str(clause.compile())
    assert "':y'" in str(clause.compile())
    cast = text(bindable_text("SELECT a::int, :v::text", "postgres"))
    assert set(cast.compile().params) == {"v"}
    assert str(cast.compile()).endswith(":v::text")
