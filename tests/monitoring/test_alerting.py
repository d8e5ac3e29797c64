"""The Prometheus rules operators deploy: valid for the real ``promtool``, and firing on the series
of a real load run (``benchmarks/alert_series.py`` recorded them from PostgreSQL under load)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from benchmarks import alert_series

from support import require

ROOT = Path(__file__).resolve().parents[2]
RULES = alert_series.RULES
RECORDED = alert_series.OUTPUT
DASHBOARD = ROOT / "monitoring" / "grafana" / "floe-compute.json"
_NAME = re.compile(r"\b((?:db_client|floe_compute)_[a-z_]+)\b")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    require(found is not None, "promtool is not installed (apt-get install prometheus)")
    assert found is not None
    return subprocess.run([found, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alerts_fire_on_the_recorded_load() -> None:
    done = promtool("test", "rules", RECORDED.name, cwd=RECORDED.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_recorded_expectations_follow_the_rules() -> None:
    """A rule changed without writing the test file again (``--rerender``) fails here."""
    text = RECORDED.read_text()
    again = alert_series.render(alert_series.recorded(text), alert_series.load_rules(RULES))
    assert again == text, "run: python benchmarks/alert_series.py --rerender"


def _expressions() -> dict[str, str]:
    exprs = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            exprs[rule.get("alert") or rule["record"]] = rule["expr"]
    if DASHBOARD.exists():
        import json

        for panel in json.loads(DASHBOARD.read_text())["panels"]:
            for target in panel.get("targets", []):
                exprs[f"panel {panel['title']!r}"] = target["expr"]
    return exprs


def test_every_metric_the_rules_and_panels_read_was_recorded() -> None:
    """A misspelled name would make an alert silently never fire; the recorded names are the
    exporter's own, scraped from a real run."""
    series = alert_series.recorded(RECORDED.read_text()).series
    recorded = {key.split("{")[0] for key in series}
    labels = {label for key in series for label in re.findall(r'(\w+)="', key)}
    for name, expr in _expressions().items():
        for metric in set(_NAME.findall(expr)) - labels:
            assert metric in recorded, f"{name} reads {metric}, which no scrape had"
    groups = yaml.safe_load(RULES.read_text())["groups"]
    every_alert = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tested = set(re.findall(r"alertname: (\w+)", RECORDED.read_text()))
    assert every_alert - {"FloeComputeDegraded"} <= tested


@pytest.mark.slow
@pytest.mark.postgres
def test_a_fresh_load_run_fires_the_same_alerts(tmp_path: Path) -> None:
    """Records again from a real PostgreSQL load and replays it: the alerts do not depend on the
    one recording committed."""
    from fixtures.postgres import PostgresNotInstalledError, find_bin_dir

    try:
        find_bin_dir()
    except PostgresNotInstalledError as exc:
        require(False, str(exc))
    shutil.copy(RULES, tmp_path / RULES.name)
    output = tmp_path / RECORDED.name
    script = ROOT / "benchmarks" / "alert_series.py"
    done = subprocess.run(
        [sys.executable, str(script), "--output", str(output), "--step", "0.5"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    replay = promtool("test", "rules", output.name, cwd=tmp_path)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_the_docs_show_the_rules_as_they_are() -> None:
    """docs/health-and-metrics.md names every alert, and its example is the rule file's own."""
    docs = (ROOT / "docs" / "health-and-metrics.md").read_text()
    section = docs.split("### Alerts and a dashboard", 1)[1]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])[0]
    rules = {
        r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    assert {k: v for k, v in rules[example["alert"]].items() if k != "annotations"} == example
    assert all(f"`{name}`" in section for name in rules)
