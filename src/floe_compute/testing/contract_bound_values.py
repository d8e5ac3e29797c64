"""Contract section: no bound value reaches an error message or a log line, however it is nested.

A driver's message may quote a bound value (``Could not convert string '...'``), also an element of a
list or a Decimal, a timestamp or a UUID in the engine's own text form; the library masks them all.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from floe_compute import ComputeError, ComputePlugin, QueryError

__all__ = ["BoundValueContract"]


class BoundValueContract:
    """Mixed into :class:`ComputePluginContract`; uses its ``make_plugin`` fixture and ``secret``."""

    secret: str

    def nested_value_query(self) -> str:
        """A statement that fails on a list bound to ``:s``, quoting an element if it can."""
        return "SELECT CAST(:s AS INTEGER[]) AS n"

    def bound_value_cases(self) -> dict[str, tuple[str, Any, tuple[str, ...]]]:
        """Failing statements, the value bound to ``:s``, and the texts no error may show."""
        as_text = "SELECT CAST(CAST(:s AS VARCHAR) AS INTEGER) AS n"
        moment = datetime.datetime(2031, 5, 17, 13, 14, 15, 123456)
        card = "4111111111111111"
        return {
            "str": ("SELECT CAST(:s AS INTEGER) AS n", self.secret, (self.secret,)),
            "list": (self.nested_value_query(), ["1", f"card-{card}"], (card,)),
            "decimal": ("SELECT CAST(:s AS DECIMAL(4, 1)) AS n", decimal.Decimal(f"{card}.5"), (card,)),
            "datetime": (as_text, moment, ("2031-05-17", "13:14:15")),
            "uuid": (as_text, uuid.UUID("9f1c2b3a-5d6e-4f70-8a9b-0c1d2e3f4a5b"), ("9f1c2b3a",)),
        }

    @pytest.mark.parametrize("case", ["str", "list", "decimal", "datetime", "uuid"])
    def test_bound_values_never_in_errors_or_logs(
        self, make_plugin: Callable[..., ComputePlugin], caplog: pytest.LogCaptureFixture, case: str
    ) -> None:
        sql, value, hidden = self.bound_value_cases()[case]
        plugin = make_plugin(errors={"keep_driver_cause": False})
        with caplog.at_level("DEBUG"), pytest.raises(ComputeError) as caught:
            plugin.execute(sql, {"s": value}).fetchall()
        error = caught.value
        assert isinstance(error, QueryError) and error.query_id is not None
        chained: list[str] = []  # nothing reachable from the error keeps the driver's text when told not to
        seen: BaseException | None = error.__cause__ or error.__context__
        while seen is not None and len(chained) < 10:
            chained.append(f"{seen} {seen!r}")
            seen = seen.__cause__ or seen.__context__
        said = f"{error} {error!r} {error.args!r} {' '.join(chained)}"
        logged = [f"{r.getMessage()} {getattr(r, 'floe', '')}" for r in caplog.records]
        for text in hidden:
            assert text not in said, said
            assert not [line for line in logged if text in line]
        assert plugin.pool_stats().in_use == 0
