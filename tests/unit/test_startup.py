"""A fast start: what a command or a short-lived process imports and pays for (speed: make bench)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from floe_compute.docstrings import field_docstrings
from floe_compute.engines.duckdb import DuckDBConfig
from floe_compute.reference import manifest_schema


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_cli_query_imports_only_what_it_uses() -> None:
    """No YAML, Arrow, sqlglot, OpenTelemetry, other engines or the reference on the query path."""
    done = run_python(
        """
        import contextlib, io, json, sys
        from floe_compute.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = main(["query", "duckdb:///:memory:", "select 42 AS answer"])
        unwanted = ("yaml", "pyarrow", "sqlglot", "opentelemetry", "psycopg", "snowflake",
                    "google", "floe_compute.reference", "floe_compute.engines.postgres",
                    "floe_compute.aio", "floe_compute.dbt")
        print(json.dumps({"code": code, "out": out.getvalue(),
                          "loaded": sorted(m for m in unwanted if m in sys.modules)}))
        """
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["code"] == 0
    assert "42" in report["out"]
    assert report["loaded"] == []


def test_spans_and_metrics_start_when_the_application_sets_up_opentelemetry_later() -> None:
    """Until something imports OpenTelemetry no provider can exist, so queries skip it; an SDK
    set up afterwards (even on a plugin that is already connected) gets the next query's span,
    its duration and the pool's metrics."""
    done = run_python(
        """
        import json, sys
        from floe_compute import create_plugin
        with create_plugin("duckdb:///:memory:", name="late") as compute:
            with compute.execute("SELECT 1") as result:
                result.fetchall()
            before = "opentelemetry" in sys.modules

            from opentelemetry import metrics, trace
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)

            with compute.execute("SELECT 2 AS two", query_id="after-setup") as result:
                result.fetchall()
            spans = [dict(s.attributes) for s in exporter.get_finished_spans()]
            data = reader.get_metrics_data()
            names = sorted({m.name for r in data.resource_metrics for s in r.scope_metrics
                            for m in s.metrics})
        print(json.dumps({"before": before, "spans": spans, "metrics": names}))
        """
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["before"] is False
    assert [s["floe.query.id"] for s in report["spans"]] == ["after-setup"]
    assert report["spans"][0]["db.client.connection.pool.name"] == "late"
    assert "db.client.operation.duration" in report["metrics"]
    assert "db.client.connection.count" in report["metrics"]


def test_field_docstrings_are_the_descriptions_in_the_json_schema() -> None:
    """Read from the source when a schema is asked for (not at import), for the manifest's
    schema and for a user's own ``model_json_schema()`` alike."""
    docs = field_docstrings(DuckDBConfig)
    assert docs["database"] == "The database file, or ``:memory:``."
    assert docs["pool"] == "The connection pool."  # inherited from ComputeConfig
    own = DuckDBConfig.model_json_schema()
    assert own["properties"]["database"]["description"] == docs["database"]
    assert own["properties"]["pool"]["description"] == "The connection pool."
    assert own["$defs"]["PoolConfig"]["properties"]["size"]["description"] == (
        "Connections kept open in the pool."
    )
    defs = manifest_schema()["$defs"]
    assert defs["TimeoutConfig"]["properties"]["query"]["description"].startswith("Deadline of a query")


def test_the_console_script_exits_with_the_commands_status() -> None:
    script = Path(sys.executable).with_name("floe-compute")
    ok = subprocess.run(
        [str(script), "query", "duckdb:///:memory:", "select 7 AS seven", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "seven\n7\n", "")
    failed = subprocess.run(
        [str(script), "query", "duckdb:///:memory:", "select * from missing_table"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("floe-compute: error: ")
    assert len(failed.stderr.splitlines()) == 1


def test_the_console_script_collects_garbage_again_once_the_plugin_exists() -> None:
    """Start-up runs without the garbage collector (its passes over objects that live until exit
    were a tenth of a short query); a long result is then streamed with it working again."""
    done = run_python(
        """
        import gc, sys
        import floe_compute.cli as cli
        import floe_compute.registry as registry

        seen = {"starting": [], "streaming": []}
        create_plugin = registry.create_plugin

        def spied_create_plugin(*args, **kwargs):
            seen["starting"].append(gc.isenabled())
            return create_plugin(*args, **kwargs)

        class SpiedWriter(cli.WRITERS["csv"]):
            def batch(self, rows):
                seen["streaming"].append(gc.isenabled())
                return super().batch(rows)

        registry.create_plugin = spied_create_plugin
        cli.WRITERS["csv"] = SpiedWriter
        sys.argv = ["floe-compute", "query", "duckdb:///:memory:", "select * from range(5)",
                    "--format", "csv", "--batch-size", "2"]
        try:
            cli.run()
        finally:
            print(seen, gc.isenabled(), file=sys.stderr)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["range", "0", "1", "2", "3", "4"]
    assert done.stderr.strip() == "{'starting': [False], 'streaming': [True, True, True]} True"
