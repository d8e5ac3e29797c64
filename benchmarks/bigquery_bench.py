"""``make bench``, BigQuery line: the plugin's Arrow batches against the client's own
``to_arrow_iterable`` loop, on the same query, in the same run, on the local emulator.

Both read the same REST pages (``jobs.getQueryResults``, 10,000 rows each) through the same client
code; the plugin adds its job config, the helper thread that keeps each call cancellable, and the
result's bookkeeping. Runs are interleaved (plugin, raw, raw, plugin...) so that load from elsewhere
on the machine hits both alike; the best time of each is kept (noise only ever adds time).
Skips with a message (exit 0) when the emulator's tool environment has not been built.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.bigquery import BigQueryEmulator, EmulatorNotInstalledError  # noqa: E402

PROJECT = "floe-bench"
PAGE = 10_000
RATIO_MAX = 1.10
QUERY = (
    "SELECT i AS id, i / 7 AS amount, CONCAT('tag ', CAST(MOD(i, 26) AS STRING)) AS tag "
    "FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS i"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000, help="at most a million (emulator memory)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        emulator = BigQueryEmulator(PROJECT)
    except EmulatorNotInstalledError as exc:
        print(f"bigquery: skipped: {exc}")
        return 0
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from floe_compute import create_plugin

    sql = QUERY.format(rows=min(args.rows, 1_000_000))
    with emulator:
        client = bigquery.Client(
            PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator.url}
        )
        client.create_dataset("bench")

        def raw() -> int:
            job = client.query(sql, job_id=f"raw_{uuid.uuid4().hex}", job_retry=None)
            return sum(batch.num_rows for batch in job.result(page_size=PAGE).to_arrow_iterable())

        with create_plugin(f"bigquery://{PROJECT}/bench", api_endpoint=emulator.url) as plugin:

            def floe() -> int:
                with plugin.execute(sql, batch_size=PAGE) as result:
                    return sum(batch.num_rows for batch in result.arrow_batches(PAGE))

            floe(), raw()  # warm-up: imports, connections, the emulator's caches
            best = {"plugin": float("inf"), "raw": float("inf")}
            for repetition in range(args.repeat):
                order = [("plugin", floe), ("raw", raw)]
                for name, run in order if repetition % 2 == 0 else order[::-1]:  # neither always first
                    started = time.perf_counter()
                    rows = run()
                    best[name] = min(best[name], time.perf_counter() - started)
                    assert rows == min(args.rows, 1_000_000), rows
        client.close()
    ratio = best["plugin"] / best["raw"]
    verdict = "PASS" if ratio <= RATIO_MAX else "FAIL"
    print(
        f"bigquery (emulator, {args.rows} rows, pages of {PAGE}): plugin arrow_batches "
        f"{best['plugin']:.3f}s, client to_arrow_iterable {best['raw']:.3f}s, "
        f"ratio {ratio:.3f}x <= {RATIO_MAX}x {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
