"""Whatever a user types, a failure is a ComputeError that names the offending field or value (never
a raw pydantic, SQLAlchemy, YAML, Unicode or overflow error, never a hang), and no generated secret
appears in any output: reprs, dumps, pool names, error messages with their chains, log lines."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import (
    CONFIG_FIELDS,
    anything,
    identifiers,
    manifests,
    nested_secrets,
    secret_decimals,
    secrets,
    urls,
)

from floe_compute import ComputeError, ConfigError, create_plugin
from floe_compute.config import check_timeout
from floe_compute.plugin import ComputePlugin
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

pytestmark = pytest.mark.timeout(600)


def _everything_said(error: BaseException) -> str:
    """The error as an error tracker would see it: message, args, the whole chain, the traceback."""
    parts, seen, pending = [], set(), [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current.args)]
        pending += [current.__cause__, current.__context__]
    parts.append("".join(traceback.format_exception(error)))
    return "\n".join(parts)


def _shown_with_cause(error: BaseException) -> str:
    """What a traceback or an error tracker shows: the error and its ``__cause__`` chain (a context
    suppressed by ``raise ... from`` is not shown)."""
    return f"{error} {error.args!r} {error!r} {''.join(traceback.format_exception(error))}"


def _failure(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, ComputeError | None]:
    """``call``'s result, or the ComputeError it raised; any other exception fails the test."""
    try:
        return call(*args, **kwargs), None
    except ComputeError as exc:
        return None, exc


def _shown(plugin: ComputePlugin) -> str:
    config = plugin.config
    return "\n".join(
        [repr(plugin), str(plugin), repr(config), str(config), config.model_dump_json(), plugin.pool_name]
    )


@given(urls())
def test_urls(case: tuple[str, str]) -> None:
    url, secret = case
    plugin, error = _failure(create_plugin, url)
    if error is not None:
        assert isinstance(error, ConfigError)
        assert secret not in _everything_said(error)
    else:
        assert secret not in _shown(plugin)


@given(st.sampled_from(sorted(CONFIG_FIELDS)).flatmap(lambda f: st.tuples(st.just(f), CONFIG_FIELDS[f])))
def test_config_values(case: tuple[tuple[str, str], Any]) -> None:
    (section, key), value = case
    _, error = _failure(create_plugin, "duckdb:///:memory:", **{section: {key: value}})
    if error is not None:
        assert isinstance(error, ConfigError)
        assert f"{section}.{key}" in str(error) or section in str(error), str(error)
        assert len(str(error)) < 2000


@given(st.dictionaries(st.text(max_size=10), anything, max_size=3))
def test_unknown_or_odd_override_sections(overrides: dict[str, Any]) -> None:
    _, error = _failure(create_plugin, "duckdb:///:memory:", **overrides)
    if error is not None:
        assert isinstance(error, ConfigError)
        assert any(key in str(error) for key in overrides), str(error)


@given(anything)
def test_timeout_argument(value: Any) -> None:
    _, error = _failure(check_timeout, value)
    if error is not None:
        assert isinstance(error, ConfigError)
        assert str(error).startswith("timeout: ")


@given(st.one_of(manifests(), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))), st.booleans())
def test_manifests(tmp_path_factory: pytest.TempPathFactory, text: str, as_bytes: bool) -> None:
    path = tmp_path_factory.mktemp("m") / "floe.yaml"
    if as_bytes:
        path.write_bytes(text.encode("latin-1", errors="replace"))
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _, error = _failure(create_plugin, manifest=path)
    if error is not None:
        assert isinstance(error, ConfigError)
        assert "floe.yaml" in str(error) or "url" in str(error), str(error)


SQL_PIECES = st.sampled_from(
    ["SELECT", "WITH x AS (", ")", "INSERT INTO t", "FROM", ";", "--", "/*", "*/", "$$", "'", '"', "`",
     ":x", "::", "E'", "\\", "\n", "{", "}", "FOR UPDATE", "INTO", "(", "VALUES (1)", "DELETE", ":1", "?",
     "$tag$"]
)  # fmt: skip
sql_texts = st.lists(st.one_of(SQL_PIECES, st.text(max_size=8)), max_size=12).map(" ".join)


@given(
    sql_texts, st.sampled_from([None, "duckdb", "postgres", "postgresql", "bigquery", "snowflake", "nosuch"])
)
def test_sql_functions_never_raise(sql: str, dialect: str | None) -> None:
    assert len(summarize(sql, dialect)) <= 255
    assert operation_name(sql, dialect)
    assert isinstance(returns_rows(sql, dialect), bool)
    assert isinstance(declarable(sql, dialect), bool)
    assert statement_count(sql, dialect) == len(split_statements(sql, dialect))
    names = bind_names(sql, dialect)
    assert all(f":{n}" in sql for n in names)
    assert isinstance(bindable_text(sql, dialect), str)


@given(sql_texts, secrets, st.sampled_from(["duckdb", "postgres", None]))
def test_summaries_never_hold_a_literal(sql: str, secret: str, dialect: str | None) -> None:
    statement = f"SELECT * FROM t WHERE a = '{secret}' AND b = 1 {sql}"
    assert secret not in summarize(statement, dialect)
    assert secret not in operation_name(statement, dialect)
    assert secret not in summarize(f"CREATE SECRET s (TYPE s3, SECRET '{secret}')", dialect)


@pytest.fixture(scope="module")
def duckdb_plugin() -> Iterator[ComputePlugin]:
    with create_plugin("duckdb:///:memory:", pool={"size": 2, "max_overflow": 0}) as plugin:
        yield plugin


@given(st.dictionaries(identifiers, st.one_of(anything, secrets), max_size=3), st.sampled_from([
    "SELECT CAST(:s AS INTEGER)", "SELECT :s", "SELECT 'meet at 10 :30', :s", "SELECT 1", "SELECT {'a': :s}",
]), secrets)  # fmt: skip
def test_parameters(
    duckdb_plugin: ComputePlugin,
    caplog: pytest.LogCaptureFixture,
    params: dict[str, Any],
    sql: str,
    secret: str,
) -> None:
    params = {**params, "s": secret} if "s" in params or not params else params
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    _, error = _failure(lambda: duckdb_plugin.execute(sql, params, timeout=60).fetchall())
    if error is not None:
        # the library's own words; the driver's exception kept as __cause__ may quote a bound
        # value (documented; errors.keep_driver_cause=False drops it)
        assert secret not in f"{error} {error.args!r} {error!r}"
    assert secret not in caplog.text


@given(anything)
def test_execute_timeout_argument(duckdb_plugin: ComputePlugin, timeout: Any) -> None:
    assume(timeout is not None)
    _, error = _failure(lambda: duckdb_plugin.execute("SELECT 1", timeout=timeout).close())
    if error is not None:
        assert isinstance(error, ConfigError)
        assert "timeout" in str(error)


@pytest.fixture(scope="module")
def duckdb_no_cause() -> Iterator[ComputePlugin]:
    with create_plugin("duckdb:///:memory:", errors={"keep_driver_cause": False}) as plugin:
        yield plugin


@given(nested_secrets(), st.sampled_from([
    "SELECT CAST(:s AS INTEGER[])", "SELECT CAST(:s AS INTEGER[][])", "SELECT CAST(:s AS INTEGER)",
    "SELECT CAST(CAST(:s AS VARCHAR) AS INTEGER)", "SELECT CAST(:s AS STRUCT(k0 INTEGER))",
    "SELECT CAST(:s AS MAP(VARCHAR, INTEGER))", "SELECT CAST(:s AS BLOB[])",
]))  # fmt: skip
def test_nested_parameters(
    duckdb_no_cause: ComputePlugin, caplog: pytest.LogCaptureFixture, case: tuple[Any, str], sql: str
) -> None:
    value, secret = case
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    _, error = _failure(lambda: duckdb_no_cause.execute(sql, {"s": value}, timeout=60).fetchall())
    if error is not None:
        assert secret not in _shown_with_cause(error)
    assert secret not in caplog.text


@given(secret_decimals(), st.sampled_from([
    "SELECT CAST(:s AS DECIMAL(4, 1))", "SELECT CAST(:s AS INTEGER)", "SELECT CAST(:s AS TINYINT)",
    "SELECT CAST(CAST(:s AS DOUBLE) AS INTEGER)", "SELECT CAST(CAST(:s AS VARCHAR) AS DATE)",
]))  # fmt: skip
def test_decimal_parameters(duckdb_no_cause: ComputePlugin, case: tuple[Decimal, str], sql: str) -> None:
    value, digits = case
    _, error = _failure(lambda: duckdb_no_cause.execute(sql, {"s": value}, timeout=60).fetchall())
    if error is not None:
        assert digits not in _shown_with_cause(error)
