"""Records the library's Prometheus series under a real load, as ``promtool test rules`` input.

``python benchmarks/alert_series.py`` starts a throwaway PostgreSQL (``fixtures/postgres.py``), a
plugin on a pool of 2 with the OpenTelemetry Prometheus exporter, and runs five phases of real
traffic: steady, saturated (more callers than connections, checkouts timing out), failing (queries
over their deadline, a missing table), server down, recovered. After each step it scrapes
``/metrics`` over HTTP and keeps the library's series (``db_client_*``, ``floe_compute_*``).

It writes ``monitoring/prometheus/floe-compute.test.yml``: the scraped values as ``input_series``
and, per phase, the alerts of ``floe-compute.rules.yml`` that must fire (or not) at its end. The
expectations come from the phase schedule below, never from the data, so a rule that does not fire
on real traffic fails ``promtool test rules``.

Time is compressed: a step of the load lasts ``--step`` seconds (1 s) and is recorded as one
15 s scrape interval, so counters grow per interval as much as in one real step.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.postgres import PostgresServer  # noqa: E402

OUTPUT = ROOT / "monitoring" / "prometheus" / "floe-compute.test.yml"
RULES = OUTPUT.with_name("floe-compute.rules.yml")
INTERVAL_S = 15
POOL = "orders-db"
PREFIXES = ("db_client_", "floe_compute_")

Work = Callable[[Any, int], None]


@dataclass
class Phase:
    """``threads`` callers run ``work`` for ``steps`` scrapes; ``firing`` are the alerts expected
    at its last step, ``quiet`` those expected not to fire then."""

    name: str
    steps: int
    threads: int
    work: Work
    firing: tuple[str, ...] = ()
    quiet: tuple[str, ...] = ()
    server_down: bool = False


def _quick(plugin: Any, i: int) -> None:
    plugin.execute("SELECT :i + 1", {"i": i}).fetchall()
    time.sleep(0.02)


def _slow(plugin: Any, i: int) -> None:
    # held a second: a scrape seldom lands between a check-in and the next caller's checkout,
    # when the pool shows one connection in use (on a loaded machine that gap grows)
    plugin.execute("SELECT pg_sleep(1)").fetchall()


def _failing(plugin: Any, i: int) -> None:
    if i % 2:
        plugin.execute("SELECT pg_sleep(2)", timeout=0.1).fetchall()
    else:
        plugin.execute("SELECT * FROM no_such_table").fetchall()


def _down(plugin: Any, i: int) -> None:
    plugin.execute("SELECT 1").fetchall()
    time.sleep(0.05)


ALL = (
    "FloeComputePoolSaturated",
    "FloeComputeCallersWaiting",
    "FloeComputeSlowCheckouts",
    "FloeComputeCheckoutTimeouts",
    "FloeComputeQueryTimeouts",
    "FloeComputeQueryFailures",
    "FloeComputeUnhealthy",
)

PHASES = (
    Phase("steady", 8, 1, _quick, quiet=ALL),
    Phase(
        "saturated",
        10,
        8,
        _slow,
        firing=(
            "FloeComputePoolSaturated",
            "FloeComputeCallersWaiting",
            "FloeComputeSlowCheckouts",
            "FloeComputeCheckoutTimeouts",
        ),
        quiet=("FloeComputeQueryTimeouts", "FloeComputeUnhealthy"),
    ),
    Phase(
        "failing",
        8,
        2,
        _failing,
        firing=("FloeComputeQueryTimeouts", "FloeComputeQueryFailures"),
        # its two callers may hold both connections: saturation is not asserted either way
        quiet=("FloeComputeCallersWaiting", "FloeComputeUnhealthy"),
    ),
    Phase("down", 8, 1, _down, firing=("FloeComputeUnhealthy",), server_down=True),
    Phase("recovered", 10, 1, _quick, quiet=ALL),
)


@dataclass
class Recording:
    """Every scraped series, by its text form, with one value (or None) per step so far."""

    steps: int = 0
    series: dict[str, list[float | None]] = field(default_factory=dict)

    def add(self, samples: dict[str, float]) -> None:
        for key, value in samples.items():
            self.series.setdefault(key, [None] * self.steps).append(value)
        self.steps += 1
        for values in self.series.values():
            values.extend([None] * (self.steps - len(values)))


def scrape(url: str) -> dict[str, float]:
    """The library's samples on the exporter's page, keyed ``name{label="value",...}``."""
    from prometheus_client.parser import text_string_to_metric_families

    page = urllib.request.urlopen(url, timeout=10).read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name.startswith(PREFIXES) and not sample.name.endswith("_created"):
                # an empty label is no label to Prometheus, which stores the series without it
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()) if v)
                samples[f"{sample.name}{{{labels}}}"] = float(sample.value)
    return samples


def run_phase(
    plugin: Any, phase: Phase, server: PostgresServer, step_s: float, on_step: Callable[[], None]
) -> None:
    """Runs the phase's callers until its last step has been scraped."""
    stop = threading.Event()

    from floe_compute import PoolExhaustedError

    def caller() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                phase.work(plugin, i)
            except PoolExhaustedError:  # waited its time: back in the queue at once, so that a
                pass  # scrape on a loaded machine never finds every caller between two waits
            except Exception:  # timeouts and failures are the point; the metrics count them
                time.sleep(0.01)

    if phase.server_down:
        server.stop("immediate")
    threads = [threading.Thread(target=caller, daemon=True) for _ in range(phase.threads)]
    for thread in threads:
        thread.start()
    for _ in range(phase.steps):
        time.sleep(step_s)
        on_step()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    if phase.server_down:
        server.start()


def record(step_s: float) -> Recording:
    """One real run: PostgreSQL, the exporter, every phase; returns the scraped series."""
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    from floe_compute import create_plugin

    http, _ = start_http_server(0, addr="127.0.0.1")
    url = f"http://127.0.0.1:{http.server_port}/metrics"
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    recording = Recording()
    with PostgresServer() as server:
        plugin = create_plugin(
            server.url(),
            name=POOL,
            pool={"size": 2, "max_overflow": 0, "timeout": 0.5},
            health={"monitor_interval": 0.2},
        )
        with plugin:
            for phase in PHASES:
                run_phase(plugin, phase, server, step_s, lambda: recording.add(scrape(url)))
                print(f"  {phase.name:<10} {recording.steps:3d} steps recorded", flush=True)
    http.shutdown()
    return recording


def _values(values: list[float | None]) -> str:
    return " ".join("_" if v is None else format(v, ".12g") for v in values)


def expectations(rules: dict[str, dict[str, Any]]) -> list[str]:
    """``alert_rule_test`` entries: at each phase's last step, its firing and quiet alerts."""
    lines: list[str] = []
    step = 0
    for phase in PHASES:
        step += phase.steps
        at = f"{(step - 1) * INTERVAL_S}s"
        for alert in phase.firing:
            rule = rules[alert]
            lines += [f"      - eval_time: {at}  # end of {phase.name}", f"        alertname: {alert}"]
            lines += ["        exp_alerts:", "          - exp_labels:"]
            lines += [f"              db_client_connection_pool_name: {POOL}"]
            lines += [f"              {k}: {v}" for k, v in sorted(rule["labels"].items())]
            lines += ["            exp_annotations:"]
            for key, text in sorted(rule["annotations"].items()):
                text = text.replace("{{ $labels.db_client_connection_pool_name }}", POOL)
                lines += [f"              {key}: {json.dumps(text)}"]
        for alert in phase.quiet:
            lines += [f"      - eval_time: {at}  # end of {phase.name}", f"        alertname: {alert}"]
            lines += ["        exp_alerts: []"]
    return lines


def load_rules(path: Path) -> dict[str, dict[str, Any]]:
    """Each alert's labels and annotation templates, from the rule file."""
    import yaml

    rules: dict[str, dict[str, Any]] = {}
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rules[rule["alert"]] = {"labels": rule["labels"], "annotations": rule["annotations"]}
    return rules


def render(recording: Recording, rules: dict[str, dict[str, Any]]) -> str:
    header = [
        "# Written by benchmarks/alert_series.py from a real load run; do not edit by hand.",
        "# " + ", ".join(f"{p.name} ({p.steps} steps)" for p in PHASES),
        "rule_files:",
        "  - floe-compute.rules.yml",
        f"evaluation_interval: {INTERVAL_S}s",
        "tests:",
        f"  - interval: {INTERVAL_S}s",
        "    input_series:",
    ]
    for key in sorted(recording.series):
        header += [f"      - series: '{key}'", f"        values: '{_values(recording.series[key])}'"]
    header += ["    alert_rule_test:"]
    return "\n".join(header + expectations(rules)) + "\n"


def recorded(text: str) -> Recording:
    """The series of a file this script wrote, to render it again (``--rerender``)."""
    import yaml

    recording = Recording()
    for entry in yaml.safe_load(text)["tests"][0]["input_series"]:
        values = [None if v == "_" else float(v) for v in entry["values"].split()]
        recording.series[entry["series"]] = values
        recording.steps = len(values)
    return recording


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=float, default=1.0, help="seconds of load per recorded scrape")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--rerender", action="store_true", help="keep the recorded series, write the expectations again"
    )
    args = parser.parse_args()
    logging.getLogger("floe_compute").setLevel(logging.ERROR)  # the timeouts are expected
    rules = load_rules(RULES)
    recording = recorded(args.output.read_text()) if args.rerender else record(args.step)
    args.output.write_text(render(recording, rules))
    print(f"{len(recording.series)} series x {recording.steps} steps written to {args.output}")


if __name__ == "__main__":
    main()
