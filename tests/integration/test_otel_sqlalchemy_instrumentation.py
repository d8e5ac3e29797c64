"""opentelemetry-instrumentation-sqlalchemy on ``plugin.engine``: its spans nest under the query span.

The library's query span is the current span while the driver executes and fetches, so the spans
of other instrumentations (this one; the HTTP clients inside cloud drivers) become its children.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from floe_compute import QueryTimeoutError, create_plugin

pytest_plugins = ["postgres_fixtures"]


@pytest.fixture(params=["duckdb", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "duckdb":
        return "duckdb:///:memory:"
    pg_url: str = request.getfixturevalue("pg_url")
    return pg_url


@pytest.fixture
def instrumented(url: str, otel: Any) -> Iterator[Any]:
    plugin = create_plugin(url, name=f"otel-instr-{url.split(':')[0]}").connect()
    SQLAlchemyInstrumentor().instrument(engine=plugin.engine)
    otel.spans.clear()
    yield plugin
    SQLAlchemyInstrumentor().uninstrument()
    plugin.disconnect()


def test_its_span_is_a_child_of_the_query_span(instrumented: Any, otel: Any) -> None:
    plugin = instrumented
    with plugin.execute("SELECT 'zq-literal' AS answer", tags={"team": "growth"}) as result:
        assert result.fetchall() == [("zq-literal",)]
    spans = otel.spans.get_finished_spans()
    [query] = [s for s in spans if s.attributes.get("floe.query.id")]
    children = [s for s in spans if s.parent is not None and s.parent.span_id == query.context.span_id]
    assert children, [(s.name, dict(s.attributes)) for s in spans]
    assert all(c.context.trace_id == query.context.trace_id for c in children)
    assert query.attributes["floe.query.tag.team"] == "growth"
    assert "zq-literal" not in str(query.attributes)  # the query span never carries literals


def test_timeout_while_streaming_logs_no_span_errors(
    instrumented: Any, otel: Any, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    endless = (
        "SELECT i FROM range(10000000000) AS t(i)"
        if url.startswith("duckdb")
        else "SELECT generate_series(1, 10000000000) AS i"
    )
    with caplog.at_level(logging.WARNING):
        with pytest.raises(QueryTimeoutError), instrumented.execute(endless, timeout=0.5) as result:
            for _ in result:
                pass
        with instrumented.execute("SELECT 1") as result:
            result.fetchall()
    problems = [r.getMessage() for r in caplog.records if "span" in r.getMessage().lower()]
    assert problems == []
    [query] = [s for s in otel.spans.get_finished_spans() if s.attributes.get("error.type")]
    assert query.attributes["error.type"] == "QueryTimeoutError"
