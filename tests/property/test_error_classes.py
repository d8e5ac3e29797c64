"""An error's class says what happened to the statement (the operation's state, the error code),
never what words its message happens to contain: an identifier or a literal the server quotes
(``no_such_session_timeouts``, ``'TIMEDOUT'``, ``raise_error('cancelled upstream')``) leaves an
ordinary query error ordinary. A caller that retries timeouts must not retry a typo.

DuckDB runs the statements for real; the other engines classify the errors their drivers raise
for such a statement (built from the driver's own exception and Thrift types, with the message
layout their servers use), since their servers are too slow to start for a property test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_compute import ComputeError, ComputePlugin, QueryError, create_plugin

pytestmark = pytest.mark.timeout(600)

WORDS = [
    "timeout", "Timeout", "TIMEOUT", "timed out", "TIMEDOUT", "TIMEDOUT_STATE", "time out",
    "statement timeout", "canceling statement due to statement timeout", "Query timed out",
    "cancel", "canceled", "cancelled", "CANCELED_STATE", "query_canceled", "interrupted",
    "INTERRUPT Error: Interrupted!", "aborted", "deadline exceeded", "SQLSTATE: 57014",
    "000604", "000630", "stopped", "Connection refused", "lost", "Could not connect to server",
    "Conflicting lock is held in /usr/bin/python3 (PID 42)",
]  # fmt: skip

fragments = st.builds(
    lambda before, word, after: f"{before}{word}{after}",
    st.from_regex(r"[a-z_]{0,6}", fullmatch=True),
    st.sampled_from(WORDS),
    st.from_regex(r"[a-z_]{0,6}", fullmatch=True),
)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@pytest.fixture(scope="module")
def duckdb_plugin() -> Iterator[ComputePlugin]:
    with create_plugin("duckdb:///:memory:") as plugin:
        yield plugin


def _duckdb_class(plugin: ComputePlugin, sql: str) -> type[BaseException]:
    with pytest.raises(ComputeError) as caught:
        plugin.execute(sql, timeout=60).fetchall()
    return type(caught.value)


@given(fragment=fragments)
def test_duckdb_error_class_ignores_quoted_words(duckdb_plugin: ComputePlugin, fragment: str) -> None:
    for template in (
        "SELECT {ident} FROM (SELECT 1 AS a)",
        "SELECT * FROM {ident}",
        "SELECT CAST({literal} AS INT)",
        "SELECT error({literal})",
        "SELECT * FROM read_csv({literal})",  # an IO error quoting the path
    ):

        def run(text: str, template: str = template) -> type[BaseException]:
            return _duckdb_class(duckdb_plugin, template.format(ident=_ident(text), literal=_quoted(text)))

        assert run(fragment) is run("plain"), template


# -- engines whose drivers' errors are classified -------------------------------------------------

SPARK_MESSAGES = [
    "org.apache.hive.service.cli.HiveSQLException: Error running query: [UNRESOLVED_COLUMN.WITHOUT_"
    "SUGGESTION] org.apache.spark.sql.AnalysisException: [UNRESOLVED_COLUMN.WITHOUT_SUGGESTION] A "
    "column, variable, or function parameter with name `{x}` cannot be resolved.  "
    "SQLSTATE: 42703; line 1 pos 7\n"
    "\tat org.apache.spark.sql.hive.thriftserver.HiveThriftServerErrors$.runningQueryError(X.scala:43)",
    "org.apache.hive.service.cli.HiveSQLException: Error running query: [CAST_INVALID_INPUT] "
    "org.apache.spark.SparkNumberFormatException: [CAST_INVALID_INPUT] The value '{x}' of the type "
    '"STRING" cannot be cast to "INT" because it is malformed. SQLSTATE: 22018',
    "org.apache.hive.service.cli.HiveSQLException: Error running query: [USER_RAISED_EXCEPTION] "
    "org.apache.spark.SparkRuntimeException: [USER_RAISED_EXCEPTION] {x} SQLSTATE: P0001",
    "[TABLE_OR_VIEW_NOT_FOUND] The table or view `{x}` cannot be found. SQLSTATE: 42P01",
]


def _spark_error(message: str) -> Exception:
    from pyhive import exc as hive_exc
    from TCLIService import ttypes

    status = ttypes.TGetOperationStatusResp(
        status=ttypes.TStatus(statusCode=ttypes.TStatusCode.SUCCESS_STATUS),
        operationState=ttypes.TOperationState.ERROR_STATE,
        errorMessage=message,
        sqlState="42000",
    )
    return hive_exc.OperationalError(status)


def _databricks_error(message: str) -> Exception:
    from databricks.sql import exc as db_exc

    return db_exc.ServerOperationError(message, {"operation-id": "01f0", "diagnostic-info": None})


def _snowflake_error(message: str) -> Exception:
    from snowflake.connector import errors as sf_errors

    return sf_errors.ProgrammingError(msg=message, errno=904, sqlstate="42000", sfqid="01b2")


def _bigquery_error(message: str) -> Exception:
    from google.api_core import exceptions as api_exceptions

    return api_exceptions.BadRequest(message, errors=[{"reason": "invalidQuery", "message": message}])


ENGINES: dict[str, tuple[str, Callable[[str], Exception], list[str]]] = {
    "spark": ("spark://floe@127.0.0.1:10000/default", _spark_error, SPARK_MESSAGES),
    "databricks": (
        "databricks://token:t0k3n@127.0.0.1?http_path=/sql/1.0/warehouses/x",
        _databricks_error,
        SPARK_MESSAGES,
    ),
    "snowflake": (
        "snowflake://floe:pw@acme/db/public",
        _snowflake_error,
        ["SQL compilation error: error line 1 at position 7 invalid identifier '{x}'"],
    ),
    "bigquery": (
        "bigquery://floe-project/dataset",
        _bigquery_error,
        ["Unrecognized name: {x} at [1:8]", "Bad int64 value: {x}", "{x}"],
    ),
}


Engine = tuple[ComputePlugin, Callable[[str], Exception], list[str]]


@pytest.fixture(scope="module", params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Engine:
    url, make_error, messages = ENGINES[request.param]
    return create_plugin(url), make_error, messages  # never connected: classify_error needs no server


@given(fragment=fragments)
def test_a_drivers_error_class_ignores_quoted_words(engine: Engine, fragment: str) -> None:
    plugin, make_error, messages = engine
    for message in messages:
        plain = plugin.classify_error(make_error(message.format(x="plain_name")))
        worded = plugin.classify_error(make_error(message.format(x=fragment)))
        assert plain is not None and worded is not None
        assert plain[0] is QueryError, (message, plain)
        assert worded[0] is plain[0], (plugin.name, message.format(x=fragment), worded)
