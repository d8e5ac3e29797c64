"""The contract suite's settings, SQL hooks and fixtures, which every section shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floe_compute import ComputePlugin

Factory = Callable[..., ComputePlugin]

__all__ = ["ContractBase", "Factory"]


class ContractBase:
    """Settings an engine's contract subclass may change, the SQL it overrides, and the fixtures."""

    #: A statement that runs for minutes unless it is cancelled.
    slow_query = "SELECT count(*) FROM range(10000000000)"
    #: Seconds within which a cancelled query must have let go of its connection.
    cancel_grace = 2.0
    #: A deadline that passes after ``execute()`` returned (before the rows are read, or before a
    #: finished write is closed): longer for engines whose statements take longer than this to
    #: start, or a one-row INSERT to finish, on a loaded machine.
    late_deadline = 0.2
    #: Whether a statement commits as it finishes, with no transaction for a failure afterwards to
    #: roll back (BigQuery: each statement is a job). The caller's error still reaches the caller.
    commits_each_statement = False
    #: Statements each of eight threads runs in the pool-statistics test: fewer for engines where
    #: a statement is several round trips to a slow server (the test still makes threads wait).
    statements_per_thread = 200

    def series_query(self, n: int) -> str:
        """``n`` rows: an integer ``i`` from 0 and a text ``label``."""
        return f"SELECT i, 'row ' || CAST(i AS VARCHAR) AS label FROM range({n}) AS t(i) ORDER BY i"

    def endless_query(self) -> str:
        """A result that streams rows for minutes (the deadline must stop it mid-iteration)."""
        return "SELECT i FROM range(10000000000) AS t(i)"

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture
    def compute_factory(self) -> Factory:
        raise NotImplementedError("provide a compute_factory fixture: (**overrides) -> ComputePlugin")

    @pytest.fixture
    def make_plugin(self, compute_factory: Factory) -> Iterator[Factory]:
        created: list[ComputePlugin] = []

        def make(**overrides: Any) -> ComputePlugin:
            plugin = compute_factory(**overrides)
            plugin.connect()
            created.append(plugin)
            return plugin

        yield make
        for plugin in created:
            plugin.disconnect()

    @pytest.fixture
    def plugin(self, make_plugin: Factory) -> ComputePlugin:
        return make_plugin()

    def wait_until_running_on_engine(self, plugin: ComputePlugin, query_id: str) -> None:
        """Wait until the engine itself shows the query as running (it was sent with the tag
        ``contract_query=<query_id>``). Engines that can list their running statements override
        this; the default checks nothing beyond ``running_queries()``."""
