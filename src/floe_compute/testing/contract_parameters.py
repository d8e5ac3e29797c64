"""Contract section: what ``execute()`` and ``aexecute()`` accept as parameters.

Parameters are a mapping of ``:name`` placeholders to values. Anything else (a list or tuple for the
driver's positional placeholders, a bare value, a list of mappings for executemany) is refused with a
``ConfigError`` that says what is accepted, before the statement reaches the engine.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any

import pytest

from floe_compute import ComputePlugin, ConfigError

__all__ = ["ParameterContract"]

#: What users pass, by habit from DBAPI, SQLAlchemy or psycopg, and what the library refuses.
REFUSED: dict[str, Any] = {
    "list": [1],
    "tuple": (1,),
    "bare value": 1,
    "str": "1",
    "bytes": b"1",
    "empty list": [],
    "list of mappings": [{"x": 1}, {"x": 2}],
    "key not a str": {1: 1},
}


class ParameterContract:
    """Mixed into :class:`ComputePluginContract`; uses its ``plugin`` fixture."""

    @pytest.mark.parametrize("kind", sorted(REFUSED))
    def test_params_other_than_a_mapping_are_refused_before_the_statement_runs(
        self, plugin: ComputePlugin, kind: str
    ) -> None:
        plugin.execute("CREATE TABLE contract_params (x INTEGER)").close()
        with pytest.raises(ConfigError) as caught:
            plugin.execute("INSERT INTO contract_params VALUES (:x)", REFUSED[kind])
        message = str(caught.value)
        assert message.startswith("params: "), message
        assert "mapping" in message and ":name" in message, message
        assert plugin.running_queries() == []
        assert plugin.pool_stats().in_use == 0
        with plugin.execute("SELECT count(*) FROM contract_params") as result:
            assert result.fetchall() == [(0,)]

    def test_executemany_is_refused_with_what_to_do_instead(self, plugin: ComputePlugin) -> None:
        with pytest.raises(ConfigError, match=r"executemany.*not supported.*once per row"):
            plugin.execute("SELECT :x", REFUSED["list of mappings"])

    def test_driver_placeholders_with_a_mapping_name_the_placeholder_to_write(
        self, plugin: ComputePlugin
    ) -> None:
        with pytest.raises(ConfigError, match=r"%\(x\)s.*write :x"):
            plugin.execute("SELECT %(x)s AS v", {"x": 1})

    def test_any_mapping_binds(self, plugin: ComputePlugin) -> None:
        with plugin.execute("SELECT :x AS v", MappingProxyType({"x": 7})) as result:
            assert result.fetchall() == [(7,)]

    @pytest.mark.parametrize("kind", ["list", "bare value", "list of mappings", "key not a str"])
    def test_aexecute_refuses_the_same_params(self, plugin: ComputePlugin, kind: str) -> None:
        async def run() -> None:
            async with plugin.aexecute("SELECT :x AS v", REFUSED[kind]) as result:
                await result.fetchall()

        with pytest.raises(ConfigError, match=r"^params: .*mapping"):
            asyncio.run(run())
        assert plugin.running_queries() == []
        assert plugin.pool_stats().in_use == 0
