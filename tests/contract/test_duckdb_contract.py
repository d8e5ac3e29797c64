"""The contract suite on DuckDB, in memory and in a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from floe_compute import ComputePlugin, create_plugin
from floe_compute.testing import ComputePluginContract


class TestDuckDBInMemory(ComputePluginContract):
    connection_loss_untestable = "DuckDB runs in this process: there is no connection to lose"

    @pytest.fixture
    def compute_factory(self) -> Any:
        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin("duckdb:///:memory:", **overrides)

        return make


class TestDuckDBFile(ComputePluginContract):
    connection_loss_untestable = "DuckDB runs in this process: there is no connection to lose"

    @pytest.fixture
    def compute_factory(self, tmp_path: Path) -> Any:
        def make(**overrides: Any) -> ComputePlugin:
            return create_plugin(f"duckdb:///{tmp_path / 'contract.duckdb'}", **overrides)

        return make
