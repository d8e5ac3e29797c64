"""The Grafana dashboard for floe-compute's pool and query metrics, built with Grafana's own types.

``python monitoring/grafana/dashboard.py`` writes ``floe-compute.json`` beside this file (import it
in Grafana, or provision it). The builders come from ``grafana-foundation-sdk``, which Grafana
generates from its dashboard schema, so a field or value the schema does not know does not
type-check; tests/monitoring checks that the JSON is this script's output and reads back through
the schema's models unchanged. The panels' queries are :data:`PANELS`, which
``monitoring/render_panels.py`` also evaluates to draw the picture in the docs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OUTPUT = Path(__file__).with_name("floe-compute.json")
POOL = 'db_client_connection_pool_name=~"$pool"'
BY_POOL = "by (db_client_connection_pool_name)"
LEGEND = "{{db_client_connection_pool_name}}"


@dataclass(frozen=True)
class PanelSpec:
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]
    """(PromQL, legend) pairs."""
    description: str = ""


PANELS = (
    PanelSpec(
        "Pool saturation",
        "percentunit",
        (
            (
                f'sum {BY_POOL} (db_client_connection_count{{{POOL},db_client_connection_state="used"}})'
                f" / max {BY_POOL} (db_client_connection_max{{{POOL}}})",
                LEGEND,
            ),
        ),
        "Connections in use over the pool's maximum (pool.size + pool.max_overflow).",
    ),
    PanelSpec(
        "Callers waiting for a connection",
        "short",
        ((f"max {BY_POOL} (db_client_connection_pending_requests{{{POOL}}})", LEGEND),),
    ),
    PanelSpec(
        "Connection wait time (p50, p95)",
        "s",
        tuple(
            (
                f"histogram_quantile({q}, sum by (db_client_connection_pool_name, le) "
                f"(rate(db_client_connection_wait_time_seconds_bucket{{{POOL}}}[$__rate_interval])))",
                f"p{int(q * 100)} {LEGEND}",
            )
            for q in (0.5, 0.95)
        ),
    ),
    PanelSpec(
        "Timeouts per minute",
        "short",
        (
            (
                f"sum {BY_POOL} (rate(db_client_connection_timeouts_total{{{POOL}}}[$__rate_interval])) * 60",
                f"checkout {LEGEND}",
            ),
            (
                f"sum {BY_POOL} (rate(floe_compute_query_timeouts_total{{{POOL}}}[$__rate_interval])) * 60",
                f"query {LEGEND}",
            ),
        ),
        "Checkouts that gave up after pool.timeout; queries cancelled at their deadline.",
    ),
    PanelSpec(
        "Queries and failures per minute",
        "short",
        (
            (
                "sum by (db_client_connection_pool_name) "
                f"(rate(db_client_operation_duration_seconds_count{{{POOL}}}[$__rate_interval])) * 60",
                f"all {LEGEND}",
            ),
            (
                "sum by (db_client_connection_pool_name, error_type) (rate("
                f'db_client_operation_duration_seconds_count{{{POOL},error_type!=""}}'
                "[$__rate_interval])) * 60",
                "{{error_type}} " + LEGEND,
            ),
        ),
    ),
    PanelSpec(
        "Health state (0 healthy, 1 degraded, 2 unhealthy)",
        "short",
        (
            (
                f'max {BY_POOL} (floe_compute_health{{{POOL},state="degraded"}})'
                f' + 2 * max {BY_POOL} (floe_compute_health{{{POOL},state="unhealthy"}})',
                LEGEND,
            ),
        ),
        "The pool's current health state (health_check() and the background monitor).",
    ),
)


def build() -> dict[str, object]:
    """The dashboard as Grafana's JSON model."""
    from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    pools = (
        dashboard.QueryVariable("pool")
        .label("Pool")
        .datasource(source)
        .query("label_values(db_client_connection_max, db_client_connection_pool_name)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
    )
    board = (
        dashboard.Dashboard("floe-compute: pools and queries")
        .uid("floe-compute-pools")
        .tags(["floe-compute", "database"])
        .time("now-1h", "now")
        .refresh("30s")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(pools)
    )
    for spec in PANELS:
        legend = common.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
        panel = (
            timeseries.Panel()
            .title(spec.title)
            .unit(spec.unit)
            .datasource(source)
            .height(8)
            .span(12)
            .legend(legend.placement(LegendPlacement.BOTTOM))
        )
        if spec.description:
            panel = panel.description(spec.description)
        for ref, (expr, legend) in zip("ABCD", spec.targets, strict=False):
            panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref))
        board = board.with_panel(panel)
    built: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return built


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"written to {OUTPUT}")
