"""Run SQLAlchemy's dialect compliance suite against ``postgresql+floe_psycopg`` on a throwaway
PostgreSQL server: ``python tests/dialect/run.py [pytest args]`` (``make test-dialect``).

Its own pytest invocation and configuration (``pytest.ini`` and ``test.cfg`` beside this file):
SQLAlchemy's pytest plugin takes over collection and fixtures, which the project's tests must not see.
Without PostgreSQL it skips locally and fails in CI, as the project's other server tests do.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main(argv: list[str]) -> int:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import pytest
    from fixtures.postgres import PostgresNotInstalledError, PostgresServer

    from support import IN_CI

    try:
        server = PostgresServer()
    except PostgresNotInstalledError as exc:
        print(f"dialect suite: {'FAILED' if IN_CI else 'skipped'}: {exc}", file=sys.stderr)
        return 1 if IN_CI else 0
    with server:
        for schema in ("test_schema", "test_schema_2"):  # the suite's cross-schema tests
            server.psql(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {server.user}")
        url = server.url("postgresql+floe_psycopg")
        args = ["-c", str(HERE / "pytest.ini"), "--rootdir", str(HERE), "--dburi", url, str(HERE), *argv]
        return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
