"""SQLAlchemy's dialect compliance suite for ``postgresql+floe_psycopg`` (run by ``run.py``).

The dialect is found through its ``sqlalchemy.dialects`` entry point; SQLAlchemy provisions a
PostgreSQL database only for names it knows, so its PostgreSQL provisioning is imported here.
"""

import pytest

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

import sqlalchemy.dialects.postgresql.provision  # noqa: E402, F401  # provisioning for "postgresql"
from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402, F403
