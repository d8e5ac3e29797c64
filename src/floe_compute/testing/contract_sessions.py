"""The contract suite: sessions and transactions, the same on every engine.

A session pins one engine session for a block: what one statement leaves there (a temp table, a
setting) is there for the next one, and gone for everybody else and after the block. Engines
without transactions (``has_transactions = False``) refuse ``transaction()`` before anything runs.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from floe_compute import (
    ComputeError,
    ComputePlugin,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    SessionError,
)
from floe_compute.testing.contract_base import ContractBase, Factory
from floe_compute.testing.threads import run_in_thread, wait_until_listed

__all__ = ["SessionContract"]


class _Boom(Exception):
    pass


class SessionContract(ContractBase):
    """Sessions: temp tables and settings for the block only; transactions commit together."""

    #: The session deadline of the timeout test: longer where a ``SELECT 1`` can take a second.
    session_deadline = 1.0

    #: Whether the engine clears a session's connection and gives it back to the pool (its
    #: ``end_session`` hook) instead of closing it.
    session_connection_reused = False

    #: Whether a transaction's writes stay invisible to other sessions until its commit.
    transactions_isolated = True

    def temp_table_sql(self, name: str) -> str:
        """A statement that makes a session-scoped table (or view) ``name`` with one row ``i = 1``."""
        return f"CREATE TEMP TABLE {name} AS SELECT 1 AS i"

    def session_setting(self) -> tuple[str, str, object]:
        """A setting of the session: the statement setting it, a query reading it, and the value
        read while it holds (after the session, the query must read something else, or fail)."""
        return (
            "SET search_path = 'temp.main'",
            "SELECT current_setting('search_path')",
            "temp.main",
        )

    def table_sql(self, name: str) -> str:
        """A plain table ``name`` with an integer column ``i``."""
        return f"CREATE TABLE {name} (i INTEGER)"

    def _count(self, plugin: ComputePlugin, table: str) -> int:
        with plugin.execute(f"SELECT count(*) FROM {table}") as result:
            row = result.fetchone()
        assert row is not None
        return int(row[0])

    # -- sessions ---------------------------------------------------------------------------

    def test_session_temp_table_is_the_blocks_own(self, plugin: ComputePlugin) -> None:
        with plugin.session() as s:
            s.execute(self.temp_table_sql("contract_session_tmp")).close()
            with s.execute("SELECT i FROM contract_session_tmp") as result:
                assert result.fetchall() == [(1,)]
            assert plugin.pool_stats().in_use == 1  # the session holds its connection
            with pytest.raises(QueryError, match="contract_session_tmp"):
                plugin.execute("SELECT i FROM contract_session_tmp").fetchall()
        assert plugin.pool_stats().in_use == 0
        with pytest.raises(QueryError, match="contract_session_tmp"):
            plugin.execute("SELECT i FROM contract_session_tmp").fetchall()

    def test_session_setting_is_gone_after_the_block(self, make_plugin: Factory) -> None:
        plugin = make_plugin(pool={"size": 1, "max_overflow": 0})
        set_sql, read_sql, value = self.session_setting()
        invalidations = plugin.pool_stats().invalidations
        with plugin.session() as s:
            s.execute(set_sql).close()
            with s.execute(read_sql) as result:
                assert result.fetchall() == [(value,)]
        try:  # the pool's only connection, or its successor: the setting is gone (or unknown)
            with plugin.execute(read_sql) as result:
                assert result.fetchall() != [(value,)]
        except QueryError:
            pass
        if self.session_connection_reused:
            assert plugin.pool_stats().invalidations == invalidations  # the same connection, cleared

    def test_session_statements_have_their_own_ids_and_stop(self, plugin: ComputePlugin) -> None:
        with plugin.session(tags={"contract": "session"}) as s:
            outcome = run_in_thread(
                lambda: s.execute(
                    self.slow_query,
                    query_id="contract-s1",
                    timeout=60,
                    tags={"contract_query": "contract-s1"},
                ).fetchall()
            )
            listed = wait_until_listed(plugin, "contract-s1")
            assert listed.session_id == s.session_id
            self.wait_until_running_on_engine(plugin, "contract-s1")
            assert plugin.cancel_query("contract-s1")
            assert isinstance(outcome.join().error, QueryCancelledError)
            with s.execute(self.series_query(3), query_id="contract-s2") as result:  # still usable
                assert result.query_id == "contract-s2"
                assert [row[0] for row in result.fetchall()] == [0, 1, 2]
        assert plugin.pool_stats().in_use == 0
        assert plugin.running_queries() == []

    def test_session_timeout_bounds_the_block(self, plugin: ComputePlugin) -> None:
        with plugin.session(timeout=self.session_deadline) as s:
            with s.execute("SELECT 1") as result:
                assert result.fetchall() == [(1,)]
            started = time.monotonic()
            with pytest.raises(QueryTimeoutError):
                s.execute(self.slow_query, timeout=60).fetchall()  # the session's deadline is sooner
            assert time.monotonic() - started < self.session_deadline + self.cancel_grace + 5
            with pytest.raises(QueryTimeoutError, match="session"):
                s.execute("SELECT 1")
        assert plugin.pool_stats().in_use == 0

    def test_a_session_used_by_two_threads_at_once_is_an_error(self, plugin: ComputePlugin) -> None:
        with plugin.session() as s:
            outcome = run_in_thread(lambda: s.execute(self.slow_query, query_id="contract-busy").fetchall())
            wait_until_listed(plugin, "contract-busy")
            with pytest.raises(SessionError, match="another thread"):
                s.execute("SELECT 1")
            plugin.cancel_query("contract-busy")
            assert isinstance(outcome.join().error, QueryCancelledError)
            with s.execute("SELECT 1") as result:
                assert result.fetchall() == [(1,)]

    def test_disconnect_ends_an_open_session(self, plugin: ComputePlugin) -> None:
        s = plugin.session().__enter__()
        s.execute("SELECT 1").close()
        plugin.disconnect()
        with pytest.raises(SessionError, match="ended"):
            s.execute("SELECT 1")
        plugin.connect()
        assert plugin.pool_stats().in_use == 0

    # -- transactions -------------------------------------------------------------------------

    def test_statements_of_a_session_commit_one_by_one(self, plugin: ComputePlugin) -> None:
        plugin.execute(self.table_sql("contract_session_each")).close()
        with plugin.session() as s:
            s.execute("INSERT INTO contract_session_each VALUES (1)").close()
            assert self._count(plugin, "contract_session_each") == 1  # seen from another connection

    def test_transaction_commits_together_or_not_at_all(self, plugin: ComputePlugin) -> None:
        if not plugin.has_transactions:
            with plugin.session() as s, pytest.raises(ComputeError, match=plugin.name), s.transaction():
                pytest.fail("the block of a transaction ran on an engine without them")
            return
        plugin.execute(self.table_sql("contract_tx")).close()
        with plugin.session() as s:
            with pytest.raises(_Boom), s.transaction():
                s.execute("INSERT INTO contract_tx VALUES (1)").close()
                s.execute("INSERT INTO contract_tx VALUES (2)").close()
                raise _Boom
            assert self._count(plugin, "contract_tx") == 0
            with s.transaction():
                s.execute("INSERT INTO contract_tx VALUES (1)").close()
                s.execute("INSERT INTO contract_tx VALUES (2)").close()
                if self.transactions_isolated:
                    assert self._count(plugin, "contract_tx") == 0  # not yet, for anybody else
            assert self._count(plugin, "contract_tx") == 2

    def test_disconnect_rolls_back_an_open_transaction(self, plugin: ComputePlugin) -> None:
        if not plugin.has_transactions:
            return
        plugin.execute(self.table_sql("contract_tx_open")).close()
        s = plugin.session().__enter__()
        transaction = s.transaction()  # kept: a collected one would end itself
        transaction.__enter__()
        s.execute("INSERT INTO contract_tx_open VALUES (1)").close()
        plugin.disconnect()
        plugin.connect()
        if plugin.survives_disconnect_reason is None:
            assert self._count(plugin, "contract_tx_open") == 0
        with pytest.raises(SessionError, match="ended"):
            transaction.__exit__(None, None, None)

    # -- asyncio ------------------------------------------------------------------------------

    def test_async_session(self, plugin: ComputePlugin) -> None:
        async def main() -> None:
            async with plugin.asession() as s:
                await (await s.aexecute(self.temp_table_sql("contract_async_tmp"))).close()
                async with s.aexecute("SELECT i FROM contract_async_tmp") as result:
                    assert await result.fetchall() == [(1,)]

                async def slow() -> None:
                    await (await s.aexecute(self.slow_query, query_id="contract-as")).fetchall()

                task = asyncio.create_task(slow())
                deadline = time.monotonic() + 30
                while "contract-as" not in {q.query_id for q in plugin.running_queries()}:
                    assert time.monotonic() < deadline and not task.done()
                    await asyncio.sleep(0.005)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                async with s.aexecute("SELECT 1") as result:  # still usable
                    assert await result.fetchall() == [(1,)]

        asyncio.run(main())
        assert plugin.pool_stats().in_use == 0
        assert plugin.running_queries() == []

    def test_cancelling_the_task_ends_the_session(self, plugin: ComputePlugin) -> None:
        transactions = plugin.has_transactions
        if transactions:
            plugin.execute(self.table_sql("contract_async_tx")).close()

        async def main() -> None:
            async def block() -> None:
                async with plugin.asession() as s:
                    if transactions:
                        async with s.atransaction():
                            await (await s.aexecute("INSERT INTO contract_async_tx VALUES (1)")).close()
                            await (await s.aexecute(self.slow_query, query_id="contract-at")).fetchall()
                    else:
                        await (await s.aexecute(self.slow_query, query_id="contract-at")).fetchall()

            task = asyncio.create_task(block())
            deadline = time.monotonic() + 30
            while "contract-at" not in {q.query_id for q in plugin.running_queries()}:
                assert time.monotonic() < deadline and not task.done(), task
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert plugin.pool_stats().in_use == 0
        if transactions:
            assert self._count(plugin, "contract_async_tx") == 0
