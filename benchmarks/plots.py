"""``make bench``, last step: the plugin's time against each engine's raw driver, as PNG plots.

Reads what the benchmarks wrote to ``bench-results/``: ``latest.json`` (DuckDB, ``run.py``),
``postgres_arrow.json`` (PostgreSQL) and ``<engine>.json`` (Snowflake, BigQuery, Spark, written by
:func:`save_ratios`). Writes, next to them, ``<engine>-ratios.png`` per engine and
``ratios.png`` with every engine: one bar per comparison (plugin wall time / the raw driver's,
1.0 = as fast as the driver), the benchmark's target as a tick. ``--copy-to DIR`` also puts
``ratios.png`` there (the docs keep one under ``docs/img``). An engine whose benchmark did not run
is left out and named.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench-results"

Ratio = tuple[str, float, float]
"""(comparison, plugin / raw driver wall time, the target's limit)"""


def save_ratios(engine: str, ratios: list[Ratio], results: Path = RESULTS) -> Path:
    """Writes ``<engine>.json`` for the plots: the benchmarks without a JSON of their own call this."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{engine}.json"
    rows = [{"name": name, "ratio": value, "limit": limit} for name, value, limit in ratios]
    path.write_text(json.dumps({"engine": engine, "ratios": rows}, indent=2) + "\n")
    return path


def _duckdb(doc: dict[str, Any]) -> list[Ratio]:
    wall = {key: value["wall_s"] for key, value in doc["results"].items() if "wall_s" in value}
    latency = {k: doc["results"][k]["latency_us"]["median"] for k in ("latency_plugin", "latency_sqlalchemy")}
    return [
        ("Arrow batches / duckdb Arrow reader", wall["plugin_arrow"] / wall["raw_arrow"], 1.10),
        ("rows / duckdb fetchmany", wall["plugin_rows"] / wall["raw_rows"], 1.25),
        ("SELECT 1 / pooled SQLAlchemy", latency["latency_plugin"] / latency["latency_sqlalchemy"], 1.5),
    ]


def _postgres(doc: dict[str, Any]) -> list[Ratio]:
    wall = {key: value["wall_s"] for key, value in doc["results"].items()}
    return [
        ("Arrow (COPY) / ADBC", wall["plugin_arrow"] / wall["adbc"], 1.2),
        ("rows / psycopg fetchmany", wall["plugin_rows"] / wall["psycopg_rows"], 0.0),
    ]


def collect(results: Path) -> dict[str, list[Ratio]]:
    """Each engine's ratios, from whichever results exist."""
    engines: dict[str, list[Ratio]] = {}
    readers = {"duckdb": ("latest.json", _duckdb), "postgresql": ("postgres_arrow.json", _postgres)}
    for engine, (name, read) in readers.items():
        if (results / name).exists():
            engines[engine] = read(json.loads((results / name).read_text()))
    for engine in ("snowflake", "bigquery", "spark"):
        if (results / f"{engine}.json").exists():
            rows = json.loads((results / f"{engine}.json").read_text())["ratios"]
            engines[engine] = [(r["name"], r["ratio"], r["limit"]) for r in rows]
    return engines


def _bars(ax: Any, ratios: list[Ratio], title: str) -> None:
    names = [name for name, _, _ in ratios]
    values = [value for _, value, _ in ratios]
    colors = ["tab:red" if limit and value > limit else "tab:blue" for _, value, limit in ratios]
    ax.barh(names, values, color=colors, height=0.5)
    for y, (_, value, limit) in enumerate(ratios):
        ax.text(value, y, f" {value:.2f}x", va="center", fontsize=8)
        if limit:
            ax.plot([limit, limit], [y - 0.35, y + 0.35], color="black", linewidth=1.5)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, max([*values, *(limit for _, _, limit in ratios), 1.0]) * 1.3)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10, loc="left")
    ax.tick_params(labelsize=8)


def plot(engines: dict[str, list[Ratio]], results: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for engine, ratios in engines.items():
        figure, ax = plt.subplots(figsize=(8.5, 1.0 + 0.45 * len(ratios)))
        _bars(ax, ratios, f"{engine}: plugin wall time / raw driver's (target: black tick)")
        figure.tight_layout()
        written.append(results / f"{engine}-ratios.png")
        figure.savefig(written[-1], dpi=80)
        plt.close(figure)
    heights = [len(ratios) + 1 for ratios in engines.values()]
    size = (8.5, 0.45 * sum(heights) + 0.8)
    grid = {"height_ratios": heights}
    figure, axes = plt.subplots(len(engines), 1, figsize=size, squeeze=False, gridspec_kw=grid)
    for ax, (engine, ratios) in zip(axes[:, 0], engines.items(), strict=True):
        _bars(ax, ratios, engine)
    axes[-1, 0].set_xlabel("plugin wall time / raw driver's (1.0 = as fast; black tick: the target)")
    figure.tight_layout()
    written.append(results / "ratios.png")
    figure.savefig(written[-1], dpi=80)
    plt.close(figure)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--copy-to", type=Path, help="also copy ratios.png into this directory")
    args = parser.parse_args()
    engines = collect(args.results)
    missing = {"duckdb", "postgresql", "snowflake", "bigquery", "spark"} - set(engines)
    if not engines:
        raise SystemExit(f"no benchmark results in {args.results}")
    for path in plot(engines, args.results):
        print(f"written {path}")
    if missing:
        print(f"no results for {', '.join(sorted(missing))}: left out of the plots")
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.results / "ratios.png", args.copy_to / "bench-ratios.png")


if __name__ == "__main__":
    main()
