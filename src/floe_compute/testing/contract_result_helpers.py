"""The contract suite: the result helpers SQLAlchemy and DuckDB users reach for (``scalar()``,
``one()``, ``first()``, ``mappings()``, ``to_pandas()``, ``to_polars()``), with the same deadline,
cancel and row limit as fetching, blocking and asyncio alike."""

from __future__ import annotations

import asyncio
import threading

import pytest

from floe_compute import (
    ComputePlugin,
    MultipleResultsFound,
    NoResultFound,
    QueryCancelledError,
    QueryTimeoutError,
    ResourceLimitError,
)
from floe_compute.testing.contract_base import ContractBase, Factory

__all__ = ["ResultHelpersContract"]


class ResultHelpersContract(ContractBase):
    """``scalar``, ``one``, ``one_or_none``, ``first``, ``mappings``, ``to_pandas``, ``to_polars``."""

    def empty_query(self) -> str:
        return f"SELECT i, label FROM ({self.series_query(3)}) AS s WHERE i < 0"

    def test_scalar_first_one_and_one_or_none(self, plugin: ComputePlugin) -> None:
        assert plugin.execute(self.series_query(3)).scalar() == 0
        assert plugin.execute(self.empty_query()).scalar() is None
        assert plugin.execute(self.series_query(3)).first() == (0, "row 0")
        assert plugin.execute(self.empty_query()).first() is None
        assert plugin.execute(self.series_query(1)).one() == (0, "row 0")
        assert plugin.execute(self.series_query(1)).one_or_none() == (0, "row 0")
        assert plugin.execute(self.empty_query()).one_or_none() is None
        assert plugin.pool_stats().in_use == 0  # each gave its connection back

    def test_one_says_how_many_rows_there_were(self, plugin: ComputePlugin) -> None:
        with pytest.raises(NoResultFound, match="no row"):
            plugin.execute(self.empty_query()).one()
        with pytest.raises(MultipleResultsFound, match="more than one row"):
            plugin.execute(self.series_query(2)).one()
        with pytest.raises(MultipleResultsFound):
            plugin.execute(self.series_query(2)).one_or_none()
        assert plugin.pool_stats().in_use == 0

    def test_mappings_are_dicts_and_rows_stay_tuples(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(3)) as result:
            assert type(result.fetchone()) is tuple
            assert list(result.mappings()) == [{"i": 1, "label": "row 1"}, {"i": 2, "label": "row 2"}]
        with plugin.execute(self.series_query(2)) as result:
            assert result.mappings().all() == [{"i": 0, "label": "row 0"}, {"i": 1, "label": "row 1"}]

    def test_to_pandas_and_to_polars(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(1000)) as result:
            frame = result.to_pandas()
        assert list(frame.columns) == ["i", "label"]
        assert frame["i"].tolist() == list(range(1000))
        with plugin.execute(self.series_query(1000)) as result:
            polars_frame = result.to_polars()
        assert polars_frame.columns == ["i", "label"]
        assert polars_frame["label"].to_list()[:2] == ["row 0", "row 1"]

    def test_helpers_keep_the_row_limit(self, make_plugin: Factory) -> None:
        plugin = make_plugin(limits={"max_result_rows": 5})
        for helper in ("to_pandas", "to_polars", "mappings"):
            with pytest.raises(ResourceLimitError, match="max_result_rows=5"):
                outcome = getattr(plugin.execute(self.series_query(10)), helper)()
                list(outcome) if helper == "mappings" else outcome
        assert plugin.execute(self.series_query(10)).first() == (0, "row 0")
        assert plugin.pool_stats().in_use == 0

    def test_helpers_keep_the_deadline(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryTimeoutError):
            plugin.execute(self.slow_query, timeout=0.3).scalar()
        with pytest.raises(QueryTimeoutError):
            plugin.execute(self.slow_query, timeout=0.5).to_pandas()
        assert plugin.pool_stats().in_use == 0

    def test_helpers_can_be_cancelled(self, plugin: ComputePlugin) -> None:
        """A cancel (here from another thread, before the helper reads) stops each helper."""
        for helper in ("to_polars", "to_pandas", "first", "one"):
            result = plugin.execute(self.series_query(10_000), batch_size=100)
            canceller = threading.Thread(target=result.cancel)
            canceller.start()
            canceller.join()
            with pytest.raises(QueryCancelledError):
                getattr(result, helper)()
        assert plugin.pool_stats().in_use == 0

    def test_async_twins(self, make_plugin: Factory) -> None:
        plugin = make_plugin(limits={"max_result_rows": 50})

        async def main() -> None:
            assert await (await plugin.aexecute(self.series_query(3))).scalar() == 0
            assert await (await plugin.aexecute(self.series_query(3))).first() == (0, "row 0")
            assert await (await plugin.aexecute(self.series_query(1))).one() == (0, "row 0")
            assert await (await plugin.aexecute(self.empty_query())).one_or_none() is None
            with pytest.raises(MultipleResultsFound):
                await (await plugin.aexecute(self.series_query(2))).one()
            async with plugin.aexecute(self.series_query(2)) as result:
                assert [m async for m in result.mappings()] == [
                    {"i": 0, "label": "row 0"},
                    {"i": 1, "label": "row 1"},
                ]
            async with plugin.aexecute(self.series_query(20)) as result:
                assert (await result.to_pandas())["i"].tolist() == list(range(20))
            async with plugin.aexecute(self.series_query(20)) as result:
                assert (await result.to_polars())["i"].to_list() == list(range(20))
            with pytest.raises(ResourceLimitError):
                async with plugin.aexecute(self.series_query(100)) as result:
                    await result.to_pandas()
            with pytest.raises(QueryTimeoutError):
                await (await plugin.aexecute(self.slow_query, timeout=0.3)).scalar()

        asyncio.run(main())
        assert plugin.pool_stats().in_use == 0
