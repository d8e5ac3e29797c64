"""The measured cases of ``make bench``, each meant to run alone in a fresh process.

``run.py`` starts ``python benchmarks/run.py --case NAME --rows N`` once per case and repetition, so
peak RSS (``ru_maxrss``) belongs to that case alone and nothing (imports, allocator state, DuckDB's
buffer manager) carries over from one case to the next.

Every streaming case follows the same script, so that the cases differ only in the layer under test:

1. import what the case needs and open the database (not timed, but counted in peak RSS: a user of
   the plugin pays for its imports, so the RSS target compares whole processes);
2. warm up with the same query over a few rows through the same path (not timed), so one-off costs
   such as DuckDB's first query or SQLAlchemy's first compile are kept out of every case alike;
3. time ``execute`` plus consuming every row or batch, in the same way for raw and plugin cases
   (a ``for`` loop over every row; for Arrow, reading each batch's ``num_rows``).

The query is :data:`QUERY`; see its docstring for why it looks the way it does.
"""

from __future__ import annotations

import resource
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypedDict

__all__ = ["CASES", "QUERY", "Measurement", "query"]

QUERY = "SELECT i AS id, i / 7 AS amount, chr((65 + i % 26)::INTEGER) AS tag FROM range({rows}) AS t(i)"
"""The query of every streaming case: one BIGINT, one DOUBLE and one VARCHAR column.

Those are the three value types that dominate analytic results, and each has its own conversion
path into Python objects (and into Arrow), so the row cases pay a realistic per-value cost. The
values are generated cheaply: a per-row ``'x' || (i % 100)::VARCHAR`` costs DuckDB about twice as
much as shipping the rows as Arrow, which would dilute the plugin's per-batch overhead in the Arrow
ratio towards 1.0 and hide a regression. ``chr(...)`` yields a short (inlined) string for little work.
The data comes from ``range()`` rather than a table so memory stays flat as the row count grows,
which the 2M-vs-20M streaming check relies on.
"""

BATCH_SIZE = 10_000
WARMUP_ROWS = 20_000
LATENCY_WARMUP = 200
TINY_QUERY = "SELECT 1"
SLOW_QUERY = "SELECT count(*) FROM range(10000000000)"
TIMEOUT_S = 0.2


def query(rows: int) -> str:
    """The benchmark query over ``rows`` rows."""
    return QUERY.format(rows=rows)


class Measurement(TypedDict, total=False):
    """One case's result, printed as a JSON line by the child process."""

    case: str
    rows_requested: int
    rows: int
    wall_s: float
    peak_rss_mb: float
    setup_rss_mb: float
    """Peak RSS before the timed part: imports, connection and warm-up."""
    latency_us: dict[str, float]
    overshoot_ms: list[float]
    timeouts_raised: int


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quiet() -> None:
    # duckdb-engine does not declare statement-cache support; SQLAlchemy warns on every new engine.
    warnings.filterwarnings("ignore", message=".*supports_statement_cache.*")


def count_rows(rows: Iterable[Any]) -> int:
    """Touch every row, the way a consumer iterating rows would."""
    n = 0
    for _ in rows:
        n += 1
    return n


def count_batch_rows(batches: Iterable[Any]) -> int:
    """Touch every Arrow batch (its ``num_rows``), the way a consumer of batches would."""
    n = 0
    for batch in batches:
        n += batch.num_rows
    return n


def _streaming(case: str, rows: int, run: Callable[[int], int]) -> Measurement:
    """Warm ``run`` up on a few rows, then time it on ``rows`` rows."""
    run(min(WARMUP_ROWS, rows))
    setup_rss = _peak_rss_mb()
    started = time.perf_counter()
    seen = run(rows)
    wall = time.perf_counter() - started
    return Measurement(
        case=case,
        rows_requested=rows,
        rows=seen,
        wall_s=wall,
        peak_rss_mb=_peak_rss_mb(),
        setup_rss_mb=setup_rss,
    )


# -- streaming cases ---------------------------------------------------------------------------


def raw_arrow(rows: int) -> Measurement:
    """The DuckDB driver alone: ``cursor.execute(sql).to_arrow_reader(n)``."""
    import duckdb

    cursor = duckdb.connect(":memory:").cursor()

    def run(n: int) -> int:
        return count_batch_rows(cursor.execute(query(n)).to_arrow_reader(BATCH_SIZE))

    return _streaming("raw_arrow", rows, run)


def raw_rows(rows: int) -> Measurement:
    """The DuckDB driver alone: the DBAPI ``fetchmany(10000)`` loop."""
    import duckdb

    cursor = duckdb.connect(":memory:").cursor()

    def batches(n: int) -> Iterator[list[tuple[Any, ...]]]:
        cursor.execute(query(n))
        while batch := cursor.fetchmany(BATCH_SIZE):
            yield batch

    def run(n: int) -> int:
        seen = 0
        for batch in batches(n):
            seen += count_rows(batch)
        return seen

    return _streaming("raw_rows", rows, run)


def sqlalchemy_rows(rows: int) -> Measurement:
    """Plain SQLAlchemy Core over duckdb-engine: ``result.partitions(10000)``.

    ``stream_results`` is left out: duckdb-engine has no server-side cursors and ignores it, and the
    DuckDB cursor streams regardless.
    """
    _quiet()
    from sqlalchemy import create_engine, text

    engine = create_engine("duckdb:///:memory:")

    def run(n: int) -> int:
        seen = 0
        with engine.connect() as connection:
            for partition in connection.execute(text(query(n))).partitions(BATCH_SIZE):
                seen += count_rows(partition)
        return seen

    return _streaming("sqlalchemy_rows", rows, run)


def _plugin() -> Any:
    _quiet()
    from floe_compute import create_plugin

    return create_plugin("duckdb:///:memory:").connect()


def plugin_arrow(rows: int) -> Measurement:
    """The plugin: ``execute(sql).arrow_batches(10000)``."""
    plugin = _plugin()

    def run(n: int) -> int:
        with plugin.execute(query(n), batch_size=BATCH_SIZE) as result:
            return count_batch_rows(result.arrow_batches(BATCH_SIZE))

    return _streaming("plugin_arrow", rows, run)


def plugin_rows(rows: int) -> Measurement:
    """The plugin: iterating the ``QueryResult`` row by row."""
    plugin = _plugin()

    def run(n: int) -> int:
        with plugin.execute(query(n), batch_size=BATCH_SIZE) as result:
            return count_rows(result)

    return _streaming("plugin_rows", rows, run)


# -- tiny-query latency ------------------------------------------------------------------------


def _latencies(case: str, iterations: int, once: Callable[[], object]) -> Measurement:
    """Per-call latency of ``once`` (execute and fetch of ``SELECT 1``), after a warm-up."""
    for _ in range(LATENCY_WARMUP):
        once()
    samples = []
    clock = time.perf_counter
    started = clock()
    for _ in range(iterations):
        t0 = clock()
        once()
        samples.append(clock() - t0)
    wall = clock() - started
    samples.sort()
    return Measurement(
        case=case,
        rows_requested=iterations,
        rows=iterations,
        wall_s=wall,
        peak_rss_mb=_peak_rss_mb(),
        latency_us={
            "median": statistics.median(samples) * 1e6,
            "mean": statistics.fmean(samples) * 1e6,
            "p95": samples[int(0.95 * (len(samples) - 1))] * 1e6,
        },
    )


def latency_plugin(iterations: int) -> Measurement:
    """``plugin.execute("SELECT 1").fetchall()``: checkout, execute, fetch, commit, checkin."""
    plugin = _plugin()
    return _latencies("latency_plugin", iterations, lambda: plugin.execute(TINY_QUERY).fetchall())


def latency_sqlalchemy(iterations: int) -> Measurement:
    """The same through a plain SQLAlchemy engine with a ``QueuePool``.

    duckdb-engine's default pool for ``:memory:`` is ``SingletonThreadPool``, so the engine gets a
    ``QueuePool`` and a ``creator`` that hands out cursors of one root DuckDB connection: the very
    same DuckDB setup the plugin uses, so the ratio measures the plugin's layer and nothing else (a
    file database would add WAL and checkpoint work on one side only if the setups ever diverged).
    """
    _quiet()
    import duckdb
    from duckdb_engine import ConnectionWrapper
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import QueuePool

    root = duckdb.connect(":memory:")
    engine = create_engine(
        "duckdb:///:memory:",
        poolclass=QueuePool,
        pool_size=5,
        creator=lambda: ConnectionWrapper(root.cursor()),
    )
    statement = text(TINY_QUERY)

    def once() -> object:
        with engine.connect() as connection:
            return connection.execute(statement).fetchall()

    return _latencies("latency_sqlalchemy", iterations, once)


# -- timeouts ----------------------------------------------------------------------------------


def timeout_overshoot(runs: int) -> Measurement:
    """How long after its deadline a timed-out query hands control back to the caller.

    Each run executes a query that would take minutes with ``timeout=0.2`` and catches
    ``QueryTimeoutError``; the overshoot is the wall time minus 0.2 s. It covers the watchdog's
    wake-up, DuckDB's ``interrupt()``, the rollback and the connection's return to the pool.
    """
    from floe_compute import QueryTimeoutError

    plugin = _plugin()
    overshoot = []
    raised = 0
    for _ in range(runs):
        started = time.perf_counter()
        try:
            with plugin.execute(SLOW_QUERY, timeout=TIMEOUT_S) as result:
                result.fetchall()
        except QueryTimeoutError:
            raised += 1
        overshoot.append((time.perf_counter() - started - TIMEOUT_S) * 1000)
    return Measurement(
        case="timeout_overshoot",
        rows_requested=runs,
        rows=runs,
        wall_s=sum(overshoot) / 1000 + runs * TIMEOUT_S,
        peak_rss_mb=_peak_rss_mb(),
        overshoot_ms=overshoot,
        timeouts_raised=raised,
    )


CASES: dict[str, Callable[[int], Measurement]] = {
    "raw_arrow": raw_arrow,
    "raw_rows": raw_rows,
    "sqlalchemy_rows": sqlalchemy_rows,
    "plugin_arrow": plugin_arrow,
    "plugin_rows": plugin_rows,
    "latency_plugin": latency_plugin,
    "latency_sqlalchemy": latency_sqlalchemy,
    "timeout_overshoot": timeout_overshoot,
}
"""Case name -> function of its size (rows, iterations or runs) returning its measurement."""
