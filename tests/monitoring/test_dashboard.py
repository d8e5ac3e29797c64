"""The Grafana dashboard operators import: Grafana's schema accepts it, its queries parse in the
real Prometheus, and it is what ``monitoring/grafana/dashboard.py`` builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from monitoring.grafana import dashboard
from test_alerting import promtool

pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk needs Python 3.11")


def test_the_committed_json_is_the_builders_output() -> None:
    assert dashboard.OUTPUT.read_text() == dashboard.render(), "run: python monitoring/grafana/dashboard.py"


def test_the_dashboard_reads_back_unchanged_through_grafanas_schema_models() -> None:
    """grafana-foundation-sdk's models are generated from Grafana's dashboard schema: a field they
    do not know is dropped on the way back, an enum value they do not know raises."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    committed = json.loads(dashboard.OUTPUT.read_text())
    back = json.loads(json.dumps(Dashboard.from_json(committed), cls=JSONEncoder))
    assert back == committed
    assert [p["title"] for p in committed["panels"]] == [p.title for p in dashboard.PANELS]


def test_every_panel_query_parses_in_prometheus(tmp_path: Path) -> None:
    """``promtool check rules`` parses each query (Grafana's variables given values) as a rule."""
    rules = [
        {"record": f"panel:{i}:{j}", "expr": expr.replace("$pool", ".*").replace("$__rate_interval", "2m")}
        for i, spec in enumerate(dashboard.PANELS)
        for j, (expr, _) in enumerate(spec.targets)
    ]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = promtool("check", "rules", "panels.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
