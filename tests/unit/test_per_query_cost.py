"""What the plugin adds to every statement on its SQLAlchemy engine stays off SQLAlchemy's hot path.

Any engine-level connection event (``before_cursor_execute`` and the like) makes SQLAlchemy join
the dispatchers of every connection and fire all its connection events on each statement, about 70
Python calls per query; the plugin sends statements through the dialect's ``do_execute`` events
instead. Speed itself is measured by ``make bench`` (``benchmarks/concurrency.py``), not here.
"""

from __future__ import annotations

from sqlalchemy.events import ConnectionEvents

from floe_compute import create_plugin
from support import cyclic_garbage


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


def test_a_query_leaves_no_reference_cycle_behind() -> None:
    """A finished query's objects (its context, its SQLAlchemy connection) are freed when its
    result closes, not by the next run of the garbage collector, which every such cycle brings
    nearer (a collection holds the GIL while it walks the young objects)."""
    plugin = create_plugin("duckdb:///:memory:").connect()
    try:
        plugin.execute("SELECT 1").fetchall()  # the pool's first connection
        with cyclic_garbage("floe_compute", "sqlalchemy", "duckdb", "duckdb_engine") as freed:
            for _ in range(20):
                with plugin.execute("SELECT i FROM range(3) t(i)", tags={"team": "growth"}) as result:
                    assert len(result.fetchall()) == 3
        assert freed == []
    finally:
        plugin.disconnect()
