"""The contract on safe retries: a read whose connection is lost (or whose first answer never
arrives) before its first row still returns its rows; a write in the same spot is never run again.

How a connection is lost is the engine's: its contract test overrides :meth:`RetryContract.losing`
(PostgreSQL ends the backend; an HTTP engine's proxy drops the statement's answer or answers 503), or
says why it cannot in ``connection_loss_untestable`` (an embedded engine has no connection to lose).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floe_compute import ComputeError, ComputePlugin

__all__ = ["RetryContract"]

READ_MARK = "contract_retry_read"
WRITE_TABLE = "contract_retry_write"


def _tagged(query_id: str) -> dict[str, Any]:
    return {"query_id": query_id, "tags": {"contract_query": query_id}, "timeout": 60}


class RetryContract:
    """Mixed into :class:`~floe_compute.testing.ComputePluginContract`."""

    #: Why this engine's test cannot lose a statement's connection (the section is skipped with
    #: this reason); None when :meth:`losing` does.
    connection_loss_untestable: str | None = None
    #: Whether the driver itself sends a statement again after the loss :meth:`losing` makes, in a
    #: way the engine runs once (Snowflake's connector re-sends a query-request with its request
    #: id): the write then succeeds, and the library has nothing to retry.
    driver_resends_safely = False
    #: Whether the loss :meth:`losing` makes is the engine refusing the statement before it ran (a
    #: "never ran" answer such as BigQuery's ``rateLimitExceeded``): a write then ran zero times.
    losing_refuses_first = False

    def retry_read(self) -> tuple[str, list[tuple[Any, ...]]]:
        """A read whose SQL contains ``contract_retry_read``, slow enough for :meth:`losing`, and its rows."""
        return f"SELECT 42 AS {READ_MARK}", [(42,)]

    def retry_write(self) -> str:
        """A write into ``contract_retry_write`` (one INTEGER column ``id``), slow enough for
        :meth:`losing`."""
        return f"INSERT INTO {WRITE_TABLE} VALUES (1)"

    @contextlib.contextmanager
    def losing(self, plugin: ComputePlugin, query_id: str, marker: str) -> Iterator[Callable[[], int]]:
        """Within the block, the statement of ``query_id`` (sent with the tag
        ``contract_query=<query_id>``; its SQL contains ``marker``) loses its connection, or its
        first answer, before its first row, once. Yields a function telling how many times the
        engine ran that statement (for the write)."""
        raise NotImplementedError("override losing(), or say why not in connection_loss_untestable")
        yield lambda: 0  # pragma: no cover

    @pytest.fixture
    def retry_plugin(self, request: pytest.FixtureRequest) -> ComputePlugin:
        """The plugin the section runs on: engines whose :meth:`losing` needs it routed through
        something of theirs (a proxy) override this fixture. No server starts for a skipped test."""
        self._can_lose()
        make_plugin: Callable[..., ComputePlugin] = request.getfixturevalue("make_plugin")
        return make_plugin()

    def _retries(self, caplog: pytest.LogCaptureFixture, query_id: str) -> int:
        return sum(
            1
            for r in caplog.records
            if r.levelno == logging.DEBUG and query_id in r.getMessage() and "retrying" in r.getMessage()
        )

    def _can_lose(self) -> None:
        if self.connection_loss_untestable is not None:
            pytest.skip(self.connection_loss_untestable)
        if type(self).losing is RetryContract.losing:
            pytest.skip("this engine's contract test does not say how to lose a connection (losing())")

    def test_a_read_whose_connection_is_lost_before_its_first_row_returns_its_rows(
        self, retry_plugin: ComputePlugin, caplog: pytest.LogCaptureFixture
    ) -> None:
        self._can_lose()
        plugin = retry_plugin
        sql, rows = self.retry_read()
        caplog.set_level(logging.DEBUG, logger="floe_compute")
        with (
            self.losing(plugin, "contract-retry-read", READ_MARK),
            plugin.execute(sql, **_tagged("contract-retry-read")) as result,
        ):
            assert result.fetchall() == rows
        retries = self._retries(caplog, "contract-retry-read")
        assert retries == (0 if self.driver_resends_safely else 1), f"retried {retries} times"
        assert plugin.pool_stats().in_use == 0

    def test_a_write_whose_connection_is_lost_is_never_run_again(
        self, retry_plugin: ComputePlugin, caplog: pytest.LogCaptureFixture
    ) -> None:
        self._can_lose()
        plugin = retry_plugin
        plugin.execute(f"CREATE TABLE {WRITE_TABLE} (id INTEGER)").close()
        caplog.set_level(logging.DEBUG, logger="floe_compute")
        with self.losing(plugin, "contract-retry-write", WRITE_TABLE) as executions:
            if self.driver_resends_safely:
                plugin.execute(self.retry_write(), **_tagged("contract-retry-write")).close()
            else:
                with pytest.raises(ComputeError):
                    plugin.execute(self.retry_write(), **_tagged("contract-retry-write")).close()
            expected = 0 if self.losing_refuses_first and not self.driver_resends_safely else 1
            assert executions() == expected, f"the engine ran the write {executions()} times"
        assert self._retries(caplog, "contract-retry-write") == 0
        assert plugin.pool_stats().in_use == 0
