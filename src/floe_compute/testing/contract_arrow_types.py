"""Contract: Arrow types come from the engine's description of the result, empty results included.

A result with no rows has nothing to infer types from: an engine that typed its batches from values
would give ``string`` columns there, and a pipeline that concatenates or writes the batches breaks on
the day a filter matches nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pytest

if TYPE_CHECKING:
    from floe_compute import ComputePlugin

__all__ = ["ArrowTypesContract"]


class ArrowTypesContract:
    """Mixed into :class:`~floe_compute.testing.ComputePluginContract`."""

    #: Whether the driver's ``cursor.description`` carries column types (SQLite's does not: its
    #: columns have no fixed type). Without them an empty result's columns can only be text.
    describes_column_types = True

    def typed_query(self, rows: bool) -> str:
        """Columns ``i`` (integer), ``d`` (date), ``n`` (decimal), ``s`` (text): one row, or none."""
        select = (
            "SELECT CAST(7 AS INTEGER) AS i, CAST('2024-02-29' AS DATE) AS d, "
            "CAST(12.25 AS DECIMAL(10, 2)) AS n, CAST('text' AS VARCHAR(10)) AS s"
        )
        return select if rows else f"SELECT * FROM ({select}) AS t WHERE 1 = 0"

    @pytest.mark.parametrize("arrow", [False, True], ids=["rows", "arrow"])
    def test_an_empty_result_has_the_arrow_types_of_a_result_with_rows(
        self, plugin: ComputePlugin, arrow: bool
    ) -> None:
        with plugin.execute(self.typed_query(rows=True), arrow=arrow) as result:
            full = result.to_arrow()
        with plugin.execute(self.typed_query(rows=False), arrow=arrow) as result:
            reader = result.arrow_batches()
            schema = reader.schema
            empty = reader.read_all()
        assert full.num_rows == 1
        assert empty.num_rows == 0
        assert full.schema.names == ["i", "d", "n", "s"]
        assert empty.schema == schema
        if not self.describes_column_types:
            assert schema.names == full.schema.names
            return
        assert not pa.types.is_string(full.schema.field("d").type)  # typed, not text
        assert schema == full.schema, f"empty: {schema.types}, with rows: {full.schema.types}"
