"""What the plugin adds to every statement on its SQLAlchemy engine stays off SQLAlchemy's hot path.

Any engine-level connection event (``before_cursor_execute`` and the like) makes SQLAlchemy join
the dispatchers of every connection and fire all its connection events on each statement, about 70
Python calls per query; the plugin sends statements through the dialect's ``do_execute`` events
instead. Speed itself is measured by ``make bench`` (``benchmarks/concurrency.py``), not here.
"""

from __future__ import annotations

from sqlalchemy.events import ConnectionEvents

from floe_compute import create_plugin


def test_the_engine_has_no_connection_event_listeners_of_the_plugin() -> None:
    plugin = create_plugin("duckdb:///:memory:").connect()
    try:
        with plugin.execute("SELECT 42 AS answer", tags={"team": "growth"}) as result:
            assert result.fetchall() == [(42,)]
        names = [name for name in dir(ConnectionEvents) if not name.startswith("_")]
        listened = [name for name in names if getattr(plugin.engine.dispatch, name, None)]
        assert listened == []
    finally:
        plugin.disconnect()
