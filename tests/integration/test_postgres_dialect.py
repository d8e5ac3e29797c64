"""The ``postgresql+floe_psycopg`` dialect streams what a server-side cursor can run, and runs the
rest on a plain cursor: SQL that fooled a regular expression, sequences, ``SELECT ... INTO``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from floe_compute import create_plugin

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres

ROWS = 50_000


def _app(pg_url: str) -> str:
    return pg_url.split("application_name=")[1].split("&")[0]


@pytest.mark.parametrize(
    "sql",
    [
        "WITH x AS (SELECT 1) SELECT g FROM t FOR UPDATE",
        "WITH x AS (SELECT g AS update FROM t) SELECT update FROM x",
        "/* outer /* inner */ DELETE */ WITH x AS (SELECT g FROM t) SELECT g FROM x",
        "WITH x AS (SELECT g, $$ it's an UPDATE $$ AS s FROM t) SELECT g FROM x",
        "WITH x AS (SELECT g, '--' AS a FROM t) SELECT g FROM x -- (DELETE",
    ],
)
def test_queries_stream_through_a_server_side_cursor(
    pg_url: str, pg_server: PostgresServer, sql: str
) -> None:
    with create_plugin(pg_url) as plugin:
        plugin.execute(f"CREATE TABLE t AS SELECT g FROM generate_series(1, {ROWS}) g").close()
        with plugin.execute(sql) as result:
            assert len(result.fetchmany(10)) == 10
            seen = pg_server.psql(
                f"SELECT query FROM pg_stat_activity WHERE application_name = '{_app(pg_url)}'"
            )
            assert seen.startswith("FETCH FORWARD"), f"not streamed: the server last ran {seen!r}"
            assert len(result.fetchall()) == ROWS - 10


@pytest.mark.parametrize(
    ("sql", "check"),
    [
        ("SELECT 1 AS a INTO t_new", "SELECT a FROM t_new"),
        (
            "WITH x AS (SELECT '--' AS a), d AS (DELETE FROM t WHERE g = 1 RETURNING g) "
            "SELECT count(*) FROM d",
            "SELECT count(*) FROM t",
        ),
        (
            "WITH x AS (SELECT '/*' AS a), d AS (DELETE FROM t WHERE g = 1 RETURNING g) "
            "SELECT count(*) FROM d",
            "SELECT count(*) FROM t",
        ),
    ],
)
def test_statements_a_cursor_cannot_run_still_run(pg_url: str, sql: str, check: str) -> None:
    with create_plugin(pg_url) as plugin:
        plugin.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 3) g").close()
        plugin.execute(sql).close()
        assert plugin.execute(check).fetchall() in ([(1,)], [(2,)])


def test_sequence_with_stream_results(pg_url: str) -> None:
    with create_plugin(pg_url) as plugin:
        plugin.execute("CREATE SEQUENCE s").close()
        with plugin.engine.connect() as connection:
            streaming = connection.execution_options(stream_results=True)
            assert streaming.scalar(sa.Sequence("s")) == 1
            assert streaming.scalar(sa.Sequence("s")) == 2


def test_dialect_is_found_without_importing_the_engine_module(pg_url: str) -> None:
    import subprocess
    import sys

    url = pg_url.replace("postgresql+psycopg://", "postgresql+floe_psycopg://")
    script = (
        "import sys, sqlalchemy as sa\n"
        f"engine = sa.create_engine({url!r})\n"
        "print(type(engine.dialect).__name__)\n"
        "with engine.connect() as c: print(c.scalar(sa.text('SELECT 41 + 1')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["FloePsycopgDialect", "42"]
