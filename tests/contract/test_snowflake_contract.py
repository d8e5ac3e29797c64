"""The contract suite on Snowflake, against the fakesnow emulator (a database of each test's own).

fakesnow runs statements on DuckDB, one at a time, and ignores timeouts and cancellation; the
timeout and cancel checks run through the recording proxy instead (tests/integration/test_snowflake_proxy.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from floe_compute import ComputePlugin, create_plugin
from floe_compute.testing import ComputePluginContract

pytest_plugins = ["snowflake_fixtures"]
pytestmark = [pytest.mark.snowflake, pytest.mark.xdist_group("snowflake")]


class TestSnowflake(ComputePluginContract):
    def series_query(self, n: int) -> str:
        numbers = (
            f"SELECT ROW_NUMBER() OVER (ORDER BY SEQ4()) - 1 AS i FROM TABLE(GENERATOR(ROWCOUNT => {n}))"
        )
        return f"SELECT i, 'row ' || CAST(i AS VARCHAR) AS label FROM ({numbers}) ORDER BY i"

    @pytest.fixture
    def compute_factory(self, snowflake_url: str, snowflake_endpoint: dict[str, Any]) -> Any:
        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(snowflake_url, **{**snowflake_endpoint, **overrides})

        return make
