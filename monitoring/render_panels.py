"""Draws the dashboard's panels from the recorded load run, for docs/health-and-metrics.md.

Grafana does not run here, but Prometheus does (Debian's ``prometheus``): the series that
``benchmarks/alert_series.py`` scraped from a real PostgreSQL load (``floe-compute.test.yml``) are
backfilled into a private TSDB (``promtool tsdb create-blocks-from openmetrics``), a Prometheus on
127.0.0.1 serves them, and each panel's own PromQL (``grafana/dashboard.py``) is evaluated with
``query_range``; matplotlib draws the answers in the dashboard's layout.

    python monitoring/render_panels.py            # writes docs/img/dashboard-panels.png
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.alert_series import INTERVAL_S, OUTPUT, PHASES, recorded  # noqa: E402
from monitoring.grafana.dashboard import PANELS  # noqa: E402

PICTURE = ROOT / "docs" / "img" / "dashboard-panels.png"


def openmetrics(start: int) -> str:
    """The recorded series with timestamps, one step per scrape interval from ``start``."""
    lines = []
    for key, values in sorted(recorded(OUTPUT.read_text()).series.items()):
        for step, value in enumerate(values):
            if value is not None:
                lines.append(f"{key} {value!r} {start + step * INTERVAL_S}")
    return "\n".join(lines) + "\n# EOF\n"


def serve(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Prometheus on a free loopback port over ``data``, once it answers ready."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = data / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    args = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data / 'tsdb'}"]
    args += [f"--web.listen-address=127.0.0.1:{port}"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=2)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("prometheus did not become ready within 60 s")


def query_range(url: str, expr: str, start: int, end: int) -> list[dict[str, Any]]:
    expr = expr.replace("$pool", ".*").replace("$__rate_interval", "2m")
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": INTERVAL_S})
    answer = json.loads(urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=30).read())
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def draw(url: str, start: int, steps: int, picture: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3, 2, figsize=(11, 8.5), sharex=True)
    for spec, ax in zip(PANELS, axes.flat, strict=True):
        for expr, template in spec.targets:
            for series in query_range(url, expr, start, start + (steps - 1) * INTERVAL_S):
                xs = [(float(t) - start) / 60 for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=legend(template, series["metric"]))
        ax.set_title(spec.title, fontsize=10, pad=12 if ax in axes[0] else 6)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        boundary = 0
        for index, phase in enumerate(PHASES):
            left, right = boundary * INTERVAL_S / 60, (boundary + phase.steps) * INTERVAL_S / 60
            ax.axvspan(left, right, color="grey", alpha=0.12 if index % 2 else 0.0)
            if ax in axes[0]:
                ax.text(
                    (left + right) / 2,
                    1.0,
                    phase.name,
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
            boundary += phase.steps
    for ax in axes[-1]:
        ax.set_xlabel("minutes (one 15 s scrape per step of the load)")
    names = ", ".join(p.name for p in PHASES)
    figure.suptitle(f"floe-compute dashboard on a recorded PostgreSQL load run: {names}", fontsize=11)
    figure.tight_layout()
    picture.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(picture, dpi=80)


def main() -> None:
    steps = recorded(OUTPUT.read_text()).steps
    start = (int(time.time()) - 6 * 3600) // 60 * 60
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "series.om").write_text(openmetrics(start))
        create = ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(data / "series.om")]
        subprocess.run([*create, str(data / "tsdb")], check=True, capture_output=True)
        process, url = serve(data)
        try:
            draw(url, start, steps, PICTURE)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"written to {PICTURE}")


if __name__ == "__main__":
    main()
