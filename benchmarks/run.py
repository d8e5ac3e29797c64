"""``make bench``: the plugin against raw DuckDB and plain SQLAlchemy, each case in a fresh process.

Without ``--case`` this is the parent: it runs every case of ``cases.py`` as a child process
(``python benchmarks/run.py --case NAME --rows N``), repeats each one ``--repeat`` times, prints a
table with the ratios and PASS/FAIL against each target, writes everything to
``bench-results/latest.json`` and exits 1 if any target fails.

Why a fresh process per case and per repetition: peak RSS (``ru_maxrss``) only ever grows, so it
means something only for a process that ran one thing; and a fresh process keeps allocator and
DuckDB buffer state from one case out of the next one's timing.

Repetitions are interleaved (all cases once, then all again) so that a burst of load from elsewhere
on the machine (it has 2 cores) hits every case alike rather than all repetitions of one. The wall
time kept is the best run (noise only ever adds time); the peak RSS kept is the worst run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / "bench-results" / "latest.json"

STREAMING = ("raw_arrow", "raw_rows", "sqlalchemy_rows", "plugin_arrow", "plugin_rows")
FLAT = ("plugin_arrow", "plugin_rows")
"""The plugin cases whose peak RSS at ``--rows`` is compared with that at ``--small-rows``."""

ARROW_RATIO_MAX = 1.10
ROWS_RATIO_MAX = 1.25
SQLALCHEMY_SPEEDUP_MIN = 2.0
RSS_OVER_RAW_MAX_MB = 64.0
FLAT_RSS_RATIO_MAX = 1.2
LATENCY_RATIO_MAX = 1.5
CHILD_TIMEOUT_S = 900


@dataclass
class Target:
    """One acceptance target: what was compared, the value, the limit and the verdict."""

    name: str
    value: float
    limit: float
    passed: bool
    unit: str = "x"

    def line(self) -> str:
        op = ">=" if self.name.endswith("(min)") else "<="
        verdict = "PASS" if self.passed else "FAIL"
        return f"  {verdict}  {self.name:<52} {self.value:8.2f}{self.unit}  ({op} {self.limit:g}{self.unit})"


# -- child ---------------------------------------------------------------------------------------


def run_case(name: str, size: int) -> None:
    """Child mode: run one case in this process and print its measurement as one JSON line."""
    sys.path.insert(0, str(HERE))
    from cases import CASES

    measurement = CASES[name](size)
    print(json.dumps(measurement), flush=True)


# -- parent --------------------------------------------------------------------------------------


def spawn(name: str, size: int) -> dict[str, Any]:
    """Run one case in a fresh interpreter and return its measurement."""
    command = [sys.executable, str(Path(__file__).resolve()), "--case", name, "--rows", str(size)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {name} ({size}) failed with exit code {done.returncode}:\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"case {name} ({size}) printed no measurement:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best wall time, median wall time and worst peak RSS over the repetitions of one case."""
    walls = [run["wall_s"] for run in runs]
    summary: dict[str, Any] = {
        "wall_s": min(walls),
        "wall_median_s": statistics.median(walls),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "rows": min(run["rows"] for run in runs),
        "rows_requested": runs[0]["rows_requested"],
        "runs": runs,
    }
    if "setup_rss_mb" in runs[0]:
        summary["setup_rss_mb"] = max(run["setup_rss_mb"] for run in runs)
    if "latency_us" in runs[0]:
        # the best repetition's figures, as for wall time
        best = min(runs, key=lambda run: run["latency_us"]["median"])
        summary["latency_us"] = best["latency_us"]
    if "overshoot_ms" in runs[0]:
        overshoot = sorted(value for run in runs for value in run["overshoot_ms"])
        summary["overshoot_ms"] = {
            "p50": statistics.median(overshoot),
            "p95": overshoot[round(0.95 * (len(overshoot) - 1))],
            "max": overshoot[-1],
        }
        summary["timeouts_raised"] = sum(run["timeouts_raised"] for run in runs)
        summary["timeout_runs"] = len(overshoot)
    return summary


def measure(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run every case ``--repeat`` times (interleaved), then the timeout case once."""
    plan: list[tuple[str, str, int]] = [(name, name, args.rows) for name in STREAMING]
    plan += [(f"{name}@small", name, args.small_rows) for name in FLAT]
    plan += [(name, name, args.latency_iterations) for name in ("latency_plugin", "latency_sqlalchemy")]
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in plan}
    for repetition in range(1, args.repeat + 1):
        for key, name, size in plan:
            started = time.perf_counter()
            result = spawn(name, size)
            runs[key].append(result)
            print(
                f"[{repetition}/{args.repeat}] {key:<22} {result['wall_s']:8.3f}s "
                f"{result['peak_rss_mb']:7.1f} MB  ({time.perf_counter() - started:.1f}s with startup)",
                file=sys.stderr,
                flush=True,
            )
    # one run of 20 is the measurement asked for; repeating it would only change the sample size
    runs["timeout_overshoot"] = [spawn("timeout_overshoot", args.timeout_runs)]
    return {key: summarize(value) for key, value in runs.items()}


def evaluate(results: dict[str, dict[str, Any]], expected_rows: dict[str, int]) -> list[Target]:
    """The acceptance targets, in the order the acceptance text lists them."""
    wall = {key: value["wall_s"] for key, value in results.items()}
    rss = {key: value["peak_rss_mb"] for key, value in results.items()}
    latency = {key: results[key]["latency_us"]["median"] for key in ("latency_plugin", "latency_sqlalchemy")}
    targets = [
        Target(
            f"rows seen == rows requested ({len(expected_rows)} cases)",
            float(sum(results[key]["rows"] == rows for key, rows in expected_rows.items())),
            float(len(expected_rows)),
            all(results[key]["rows"] == rows for key, rows in expected_rows.items()),
            unit="",
        ),
        _max("plugin Arrow / raw Arrow wall", wall["plugin_arrow"] / wall["raw_arrow"], ARROW_RATIO_MAX),
        _max("plugin rows / raw fetchmany wall", wall["plugin_rows"] / wall["raw_rows"], ROWS_RATIO_MAX),
        Target(
            "plain SQLAlchemy rows / plugin rows wall (min)",
            wall["sqlalchemy_rows"] / wall["plugin_rows"],
            SQLALCHEMY_SPEEDUP_MIN,
            wall["sqlalchemy_rows"] / wall["plugin_rows"] >= SQLALCHEMY_SPEEDUP_MIN,
        ),
        _max(
            "plugin Arrow peak RSS - raw Arrow peak RSS",
            rss["plugin_arrow"] - rss["raw_arrow"],
            RSS_OVER_RAW_MAX_MB,
            unit=" MB",
        ),
        _max(
            "plugin rows peak RSS - raw fetchmany peak RSS",
            rss["plugin_rows"] - rss["raw_rows"],
            RSS_OVER_RAW_MAX_MB,
            unit=" MB",
        ),
    ]
    for name in FLAT:
        large, small = results[name], results[f"{name}@small"]
        label = f"{name} peak RSS {_count(large['rows_requested'])} / {_count(small['rows_requested'])}"
        targets.append(_max(label, rss[name] / rss[f"{name}@small"], FLAT_RSS_RATIO_MAX))
    targets.append(
        _max(
            "SELECT 1 median latency: plugin / SQLAlchemy",
            latency["latency_plugin"] / latency["latency_sqlalchemy"],
            LATENCY_RATIO_MAX,
        )
    )
    timeouts = results["timeout_overshoot"]
    targets.append(
        Target(
            "timed-out runs that raised QueryTimeoutError",
            float(timeouts["timeouts_raised"]),
            float(timeouts["timeout_runs"]),
            timeouts["timeouts_raised"] == timeouts["timeout_runs"],
            unit="",
        )
    )
    return targets


def _max(name: str, value: float, limit: float, unit: str = "x") -> Target:
    return Target(name, value, limit, value <= limit, unit)


def _count(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else str(rows)


def report(results: dict[str, dict[str, Any]], targets: list[Target], args: argparse.Namespace) -> None:
    """Print the table of cases, the latency and timeout figures, and the targets."""
    print(
        f"\nfloe-compute benchmark: {_count(args.rows)} rows x 3 columns, DuckDB in memory, batches of 10000"
    )
    print(f"best of {args.repeat} fresh processes per case (median in brackets); peak RSS = worst run\n")
    print(f"{'case':<22} {'rows':>6} {'wall s':>8} {'(median)':>9} {'peak RSS MB':>12} {'setup MB':>9}")
    for key in (*STREAMING, *(f"{name}@small" for name in FLAT)):
        value = results[key]
        print(
            f"{key:<22} {_count(value['rows_requested']):>6} {value['wall_s']:8.3f} "
            f"{'(' + format(value['wall_median_s'], '.3f') + ')':>9} {value['peak_rss_mb']:12.1f} "
            f"{value['setup_rss_mb']:9.1f}"
        )
    print("  (setup MB: peak RSS after imports, connect and warm-up, before the timed part)")
    print(f"\nSELECT 1, execute + fetch, {args.latency_iterations} iterations after a warm-up:")
    for key in ("latency_plugin", "latency_sqlalchemy"):
        figures = results[key]["latency_us"]
        print(
            f"  {key:<22} median {figures['median']:7.1f} us  mean {figures['mean']:7.1f} us  "
            f"p95 {figures['p95']:7.1f} us"
        )
    overshoot = results["timeout_overshoot"]["overshoot_ms"]
    print(
        f"\ntimeout overshoot over {results['timeout_overshoot']['timeout_runs']} runs of timeout=0.2s: "
        f"p50 {overshoot['p50']:.1f} ms  p95 {overshoot['p95']:.1f} ms  max {overshoot['max']:.1f} ms"
    )
    print("\ntargets:")
    for target in targets:
        print(target.line())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--case", help="child mode: run this one case and print its JSON measurement")
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows (or iterations) to measure")
    parser.add_argument("--small-rows", type=int, default=2_000_000, help="rows for the flat-memory check")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per case")
    parser.add_argument("--latency-iterations", type=int, default=2000)
    parser.add_argument("--timeout-runs", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.case:
        run_case(args.case, args.rows)
        return 0

    started = time.perf_counter()
    results = measure(args)
    expected = {key: args.rows for key in STREAMING} | {f"{name}@small": args.small_rows for name in FLAT}
    targets = evaluate(results, expected)
    report(results, targets, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "settings": {key: value for key, value in vars(args).items() if key not in ("case", "output")},
        "results": results,
        "targets": [vars(target) for target in targets],
        "duration_s": time.perf_counter() - started,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {args.output} in {document['duration_s']:.0f}s")
    return 0 if all(target.passed for target in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
