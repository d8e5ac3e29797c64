"""SQLAlchemy's own dialect compliance suite, against the ``postgresql+floe_psycopg`` dialect.

The parts that go through the dialect's execution context (statements, cursors and results,
sequences, inserts, row counts, CTEs, types' bind and result processing): what the subclass
changes. Reflection and DDL (two thirds of the run time) are the stock PostgreSQL dialect's code,
untouched by the subclass, and are left out to keep the run within a couple of minutes.
"""

from sqlalchemy.testing import config, fixtures
from sqlalchemy.testing.suite.test_cte import *  # noqa: F403
from sqlalchemy.testing.suite.test_deprecations import *  # noqa: F403
from sqlalchemy.testing.suite.test_dialect import *  # noqa: F403
from sqlalchemy.testing.suite.test_insert import *  # noqa: F403
from sqlalchemy.testing.suite.test_results import *  # noqa: F403
from sqlalchemy.testing.suite.test_rowcount import *  # noqa: F403
from sqlalchemy.testing.suite.test_select import *  # noqa: F403
from sqlalchemy.testing.suite.test_sequence import *  # noqa: F403
from sqlalchemy.testing.suite.test_types import *  # noqa: F403
from sqlalchemy.testing.suite.test_update_delete import *  # noqa: F403


class FloeDialectTest(fixtures.TestBase):
    def test_the_suite_runs_on_floe_psycopg(self) -> None:
        """Every test above ran on the subclass, not on the stock psycopg dialect."""
        from floe_compute.engines.postgres import FloePsycopgDialect

        assert type(config.db.dialect) is FloePsycopgDialect
