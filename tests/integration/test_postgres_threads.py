"""Queries on threads other than the main one, where psycopg's commands wait inside libpq, and
Ctrl-C on the main thread, where they wait from Python so that the signal can stop the query."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sqlalchemy

from floe_compute import ConnectionFailedError, QueryError, QueryTimeoutError, create_plugin
from floe_compute.testing.threads import run_in_thread
from support import interrupt

if TYPE_CHECKING:
    from fixtures.postgres import PostgresServer

pytest_plugins = ["postgres_fixtures"]
pytestmark = pytest.mark.postgres

WHERE = ["main thread", "worker thread"]


def wait_active(url: str, tag: str) -> None:
    """Wait until another session runs a statement tagged ``test=<tag>`` (a streamed query shows
    as its ``FETCH``, which carries the tags)."""
    with create_plugin(url, pool={"size": 1, "max_overflow": 0}) as observer:
        deadline = time.monotonic() + 30
        while not observer.execute(
            "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
            "AND position(:needle in query) > 0",
            {"needle": f"test='{tag}'"},
        ).fetchall():
            assert time.monotonic() < deadline, f"no statement tagged {tag} ran"
            time.sleep(0.02)


def on(where: str, call: Callable[[], Any]) -> Any:
    """``call()`` on the main thread or on a thread of its own; its value, or its exception raised."""
    if where == "main thread":
        return call()
    outcome = run_in_thread(call).join(60)
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


@contextmanager
def table_locked(pg_url: str, plugin: Any) -> Iterator[None]:
    """A table ``locked`` that another session holds in ``ACCESS EXCLUSIVE`` mode until the block
    ends: a read of it waits in its ``DECLARE``."""
    plugin.execute("CREATE TABLE locked (i int)").close()
    # an application name of its own: kill_backends leaves this session alone
    holder = sqlalchemy.create_engine(pg_url.replace("application_name=", "application_name=holder_"))
    try:
        with holder.begin() as connection:
            connection.exec_driver_sql("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        holder.dispose()


def read_loses_its_connection(server: PostgresServer, url: str, kill: Any, plugin: Any, sql: str) -> None:
    """``sql`` read on a worker thread, its backend killed once the server shows it active: the
    read says the connection was lost, and the pool has its connection back."""
    outcome = run_in_thread(lambda: plugin.execute(sql, tags={"test": "doomed"}).fetchall())
    wait_active(url, "doomed")
    assert kill(server, url) >= 1
    error = outcome.join(60).error
    assert isinstance(error, ConnectionFailedError), outcome
    assert "the connection was lost" in str(error)
    assert plugin.pool_stats().in_use == 0


@pytest.fixture
def python_waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times psycopg waited on the socket from Python, per ``Connection.wait()`` call."""
    counts: list[int] = []
    wait = psycopg.waiting.wait

    def counting(gen: Any, *args: Any, **kwargs: Any) -> Any:
        waits = [0]

        def counted() -> Any:
            sent = None
            while True:
                try:
                    request = gen.send(sent)
                except StopIteration as stop:
                    return stop.value
                waits[0] += 1
                sent = yield request

        try:
            return wait(counted(), *args, **kwargs)
        finally:
            counts.append(waits[0])

    monkeypatch.setattr(psycopg.waiting, "wait", counting)
    return counts


def test_a_read_on_a_worker_thread_waits_for_the_server_inside_libpq(
    pg_url: str, python_waits: list[int]
) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        sql = "SELECT i FROM generate_series(1, 25000) i"
        read = lambda: plugin.execute(sql, batch_size=10_000).fetchall()  # noqa: E731
        on("main thread", read)  # the pool's first connection, made on this thread
        python_waits.clear()
        assert len(on("worker thread", read)) == 25_000
        assert python_waits and sum(python_waits) == 0, python_waits
        assert len(on("main thread", read)) == 25_000
        assert sum(python_waits) >= 5, python_waits  # DECLARE, three FETCHes, COMMIT


def test_other_threads_run_while_a_worker_threads_declare_waits_for_the_server(pg_url: str) -> None:
    """The DECLARE's answer is waited for with the GIL released: this thread can still see the
    worker's query waiting for a lock and release it (else the worker's statement timeout ends it)."""
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        with table_locked(pg_url, plugin):
            read = lambda: plugin.execute("SELECT i FROM locked", tags={"test": "declare"}, timeout=5)  # noqa: E731
            outcome = run_in_thread(lambda: read().fetchall())
            wait_active(pg_url, "declare")  # the DECLARE, waiting for the lock
        assert outcome.join(60).error is None, outcome
        assert outcome.value == []


@pytest.mark.slow  # the SQL checks read 32 MB of text
def test_a_statement_longer_than_the_sockets_buffer_is_sent_whole_from_a_worker_thread(pg_url: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        literal = "x" * 32_000_000  # more than the socket takes at once: sent as the server reads it
        read = lambda: plugin.execute(f"SELECT length('{literal}')").fetchall()  # noqa: E731
        assert on("worker thread", read) == [(32_000_000,)]


@pytest.mark.parametrize("where", WHERE)
def test_a_write_commits_on_close_and_rolls_back_when_abandoned(pg_url: str, where: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        plugin.execute("CREATE TABLE t (i int)").close()

        def abandoned() -> None:
            with plugin.execute("INSERT INTO t VALUES (2)"):
                raise RuntimeError("the caller failed")

        on(where, lambda: plugin.execute("INSERT INTO t VALUES (1)").close())
        with pytest.raises(RuntimeError, match="the caller failed"):
            on(where, abandoned)
        assert on(where, lambda: plugin.execute("SELECT i FROM t").fetchall()) == [(1,)]
        assert plugin.pool_stats().in_use == 0


@pytest.mark.parametrize("where", WHERE)
def test_an_error_in_the_declare_is_raised_by_execute_and_the_connection_serves_again(
    pg_url: str, where: str
) -> None:
    """``BEGIN; DECLARE ...; FETCH 0`` goes as one message: the error is the DECLARE's, where the
    server stopped (not the FETCH's of a cursor that does not exist)."""
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        with pytest.raises(QueryError, match=r'relation "no_such_table" does not exist \(SQLSTATE 42P01\)'):
            on(where, lambda: plugin.execute("SELECT * FROM no_such_table"))
        assert plugin.pool_stats().in_use == 0
        assert on(where, lambda: plugin.execute("SELECT 1").fetchall()) == [(1,)]


FAILING_READS = {
    "server error": ("SELECT 1 / (i - 3) FROM generate_series(1, 5) i", "division by zero"),
    # a value Python cannot hold: the error names its column
    "value": ("SELECT 1 AS id, 'infinity'::date AS starts", "column 'starts'"),
}


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("failure", FAILING_READS)
def test_an_error_in_a_fetch_is_a_query_error_and_the_connection_serves_again(
    pg_url: str, where: str, failure: str
) -> None:
    sql, message = FAILING_READS[failure]
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        with pytest.raises(QueryError, match=message):
            on(where, lambda: plugin.execute(sql).fetchall())
        assert plugin.pool_stats().in_use == 0
        assert on(where, lambda: plugin.execute("SELECT 1").fetchall()) == [(1,)]


@pytest.mark.parametrize("where", WHERE)
def test_a_deadline_stops_a_fetch_on_the_server(pg_url: str, where: str) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}) as plugin:
        sleeping = lambda: plugin.execute("SELECT pg_sleep(60)", timeout=0.5).fetchall()  # noqa: E731
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError):
            on(where, sleeping)
        assert time.monotonic() - started < 30  # far from the minute the statement asked for
        assert on(where, lambda: plugin.execute("SELECT 1").fetchall()) == [(1,)]


def test_a_backend_killed_during_a_fetch_on_a_worker_thread_says_the_connection_was_lost(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any
) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}, retry={"reads": 0}) as plugin:
        read_loses_its_connection(pg_server, pg_url, kill_backends, plugin, "SELECT pg_sleep(60)")
        assert on("worker thread", lambda: plugin.execute("SELECT 1").fetchall()) == [(1,)]


def test_a_backend_killed_while_a_worker_threads_declare_waits_says_the_connection_was_lost(
    pg_server: PostgresServer, pg_url: str, kill_backends: Any
) -> None:
    with create_plugin(pg_url, pool={"size": 1, "max_overflow": 0}, retry={"reads": 0}) as plugin:
        with table_locked(pg_url, plugin):
            read_loses_its_connection(pg_server, pg_url, kill_backends, plugin, "SELECT i FROM locked")
        assert on("worker thread", lambda: plugin.execute("SELECT i FROM locked").fetchall()) == []


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from floe_compute import create_plugin

    plugin = create_plugin(sys.argv[1], pool={"size": 1, "max_overflow": 0})
    if sys.argv[2] == "forked" and os.fork():  # a prefork server's worker: its main thread is its own
        os.wait()
        sys.exit(0)
    plugin.connect()
    print("started", os.getpid(), flush=True)
    try:
        plugin.execute("SELECT pg_sleep(60)", tags={"test": sys.argv[3]}).fetchall()
    except KeyboardInterrupt as exc:
        print("interrupted", type(exc.__cause__).__name__, flush=True)
    print("next", plugin.execute("SELECT 1").fetchall(), plugin.running_queries(), flush=True)
    plugin.disconnect()
    """
)


@pytest.mark.parametrize("process", ["started", "forked"])
def test_ctrl_c_on_the_main_thread_stops_a_postgresql_query(
    pg_url: str, tmp_path: Path, process: str
) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    tag = f"ctrl_c_{process}"

    def running(line: str, pid: int) -> int:
        started, child = line.split()
        assert started == "started"
        wait_active(pg_url, tag)
        return int(child)  # the forked worker, not its parent

    outcome = interrupt(script, [pg_url, process, tag], running)
    assert outcome.line == "interrupted QueryCancelledError", outcome.stderr
    assert outcome.stopped < 30, outcome.stderr  # not when the minute of pg_sleep is over
    assert outcome.rest.strip() == "next [(1,)] []", outcome.stderr
    assert outcome.returncode == 0, outcome.stderr
