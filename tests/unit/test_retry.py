"""Which statements a lost connection may run again: reads only, one statement, nothing that writes."""

from __future__ import annotations

import pytest

from floe_compute import ConfigError, create_plugin
from floe_compute.retry_decision import safe_to_repeat


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select i from t where i > 3 order by i",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 'DELETE FROM t' AS text_only",  # a literal is not code
        "SHOW TABLES",
    ],
)
def test_reads_are_safe_to_repeat(sql: str) -> None:
    assert safe_to_repeat(sql, "postgres")


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT * FROM t FOR UPDATE",
        "SELECT nextval('s')",
        "SELECT 1; DELETE FROM t",
        "CALL refresh()",
        "SELECT * INTO copy FROM t",
        "EXPLAIN ANALYZE DELETE FROM t",
        "SELECT pg_advisory_lock(1)",
    ],
)
def test_writes_calls_locks_and_scripts_are_never_repeated(sql: str) -> None:
    assert not safe_to_repeat(sql, "postgres")


def test_retry_config_defaults_to_one_read_and_checks_its_value() -> None:
    assert create_plugin("duckdb:///:memory:").config.retry.reads == 1
    assert create_plugin("duckdb:///:memory:", retry={"reads": 0}).config.retry.reads == 0
    with pytest.raises(ConfigError, match="retry"):
        create_plugin("duckdb:///:memory:", retry={"reads": -1})


def test_snowflake_says_a_busy_answer_never_ran_the_statement() -> None:
    from snowflake.connector import errors

    plugin = create_plugin("snowflake://user:pw@account/db/schema")
    assert "HTTP 503" in (plugin.never_ran(errors.ServiceUnavailableError(errno=503)) or "")
    assert "HTTP 429" in (plugin.never_ran(errors.TooManyRequests(errno=429)) or "")
    assert plugin.never_ran(errors.ProgrammingError(msg="syntax error", errno=1003)) is None
    assert plugin.never_ran(errors.OperationalError(msg="connection reset", errno=251012)) is None
