"""Throwaway PostgreSQL servers and OpenTelemetry readers for the PostgreSQL tests.

Why a module and not conftest: test modules import these names explicitly, so they stay
independent of whatever ``tests/integration/conftest.py`` holds.

* ``pg_server``: one cluster per pytest process (so one per xdist worker, no ``xdist_group``
  needed), started on first use and removed at the end. Tests must not stop it.
* ``pg_url``: a fresh database on it per test (tables never leak from one test into another).
* ``own_server``: a private cluster for tests that stop, crash or restart the server.
* ``otel``: process-wide OpenTelemetry SDK providers (the API allows setting them once) with an
  in-memory metric reader, a Prometheus reader served over HTTP, and an in-memory span exporter.

Missing PostgreSQL binaries skip locally and fail in CI (``require``).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fixtures.postgres import PostgresNotInstalledError, PostgresServer

from support import require


def new_server() -> PostgresServer:
    """A started private cluster, or a skip (locally) / failure (CI) when PostgreSQL is missing."""
    require(
        importlib.util.find_spec("psycopg") is not None, "psycopg is not installed (uv sync --all-extras)"
    )
    try:
        server = PostgresServer()
    except PostgresNotInstalledError as exc:
        require(False, str(exc))
        raise
    return server.start()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = new_server()
    yield server
    server.cleanup()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A cluster of this test's own, free to be stopped, killed and restarted."""
    server = new_server()
    yield server
    server.cleanup()


def create_database(server: PostgresServer) -> str:
    """A fresh schema (``CREATE DATABASE`` takes ~0.3 s here) owned by ``floe``, and the URL of a
    session in it: ``search_path`` and ``application_name`` (to find its backends) set in the URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE SCHEMA {name} AUTHORIZATION {server.user}")
    return f"{server.url()}?application_name={name}&options=-csearch_path%3D{name}"


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """URL (with the password) of a schema of this test's own on the shared server."""
    return create_database(pg_server)


@pytest.fixture
def kill_backends() -> Any:
    """``kill_backends(server, url=None)``: see :func:`terminate`."""
    return terminate


def terminate(server: PostgresServer, url: str | None = None) -> int:
    """``pg_terminate_backend`` every connection of the URL's test (default: every ``floe`` one),
    returning once each backend has ended (its client's socket then holds the server's goodbye)."""
    match = f"application_name = '{url.split('application_name=')[1].split('&')[0]}'" if url else "true"
    out = server.psql(
        "SELECT count(pg_terminate_backend(pid, 30000)) FROM pg_stat_activity "
        f"WHERE usename = '{server.user}' AND {match} AND pid <> pg_backend_pid();",
        dbname="postgres",
    )
    return int(out or 0)


# -- OpenTelemetry ---------------------------------------------------------------------------------


@dataclass
class Otel:
    metrics: Any
    """``InMemoryMetricReader``"""
    spans: Any
    """``InMemorySpanExporter``"""
    prometheus_url: str

    def points(self, name: str, pool: str) -> list[Any]:
        """The data points of metric ``name`` labelled with pool ``pool``, collected now."""
        data = self.metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [
                            p
                            for p in metric.data.data_points
                            if p.attributes.get("db.client.connection.pool.name") == pool
                        ]
        return found

    def value(self, name: str, pool: str, **attributes: str) -> Any:
        """The single value (or histogram point) of ``name`` for ``pool`` and ``attributes``."""
        points = [
            p
            for p in self.points(name, pool)
            if all(p.attributes.get(k.replace("_", ".")) == v for k, v in attributes.items())
        ]
        assert len(points) == 1, f"{name} {attributes}: {points}"
        return getattr(points[0], "value", points[0])

    def finished_spans(self, pool: str) -> list[Any]:
        return [
            s
            for s in self.spans.get_finished_spans()
            if s.attributes.get("db.client.connection.pool.name") == pool
        ]


_otel: Otel | None = None


@pytest.fixture(scope="session")
def otel() -> Otel:
    """Installs SDK providers once per process; later plugins report to them."""
    global _otel
    if _otel is None:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from prometheus_client import start_http_server

        memory = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[memory, PrometheusMetricReader()]))
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        server, _ = start_http_server(0, addr="127.0.0.1")
        _otel = Otel(memory, exporter, f"http://127.0.0.1:{server.server_port}/metrics")
    return _otel
