"""PostgreSQL values the driver cannot convert, and the ``infinity`` option.

psycopg converts values in the client, as rows are fetched: a value Python cannot hold (a date or
timestamp ``infinity``/``-infinity``, a year after 9999 or BC) raises a ``DataError`` with no SQLSTATE
and no column. Cursors here name the column (:class:`NamesColumn`), and :func:`classify_conversion`
makes it a ``QueryError``: the connection is fine.

``infinity: clamp`` reads ``infinity`` as ``date.max``/``datetime.max`` and ``-infinity`` as
``date.min``/``datetime.min`` (the loaders psycopg's documentation suggests), on rows through
loaders registered on each connection, on the COPY path by :func:`clamp_text`.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from psycopg.adapt import Loader, Transformer

from floe_compute.errors import ComputeError, QueryError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "INFINITY_HINT",
    "NamesColumn",
    "clamp_infinity",
    "clamp_text",
    "clamps_infinity",
    "classify_conversion",
]

INFINITY_HINT = (
    "PostgreSQL's infinity and -infinity have no Python date or datetime; set infinity: clamp on the "
    "PostgreSQL config to read them as the largest and smallest values (date.max, datetime.max, ...)"
)
_UTC = dt.timezone.utc
_CLAMPED: dict[str, tuple[Any, Any, str, str]] = {
    # per type: infinity, -infinity, and their text as the COPY's CSV parser reads it
    "date": (dt.date.max, dt.date.min, "9999-12-31", "0001-01-01"),
    "timestamp": (dt.datetime.max, dt.datetime.min, "9999-12-31 23:59:59.999999", "0001-01-01 00:00:00"),
    "timestamptz": (
        dt.datetime.max.replace(tzinfo=_UTC),
        dt.datetime.min.replace(tzinfo=_UTC),
        "9999-12-31 23:59:59.999999+00",
        "0001-01-01 00:00:00+00",
    ),
}
_QUOTED_VALUE = re.compile(r":?\s*'(?:[^']|'')*'")


class ValueConversionError(psycopg.DataError):
    """A value of ``column`` the driver could not convert (raised from the driver's own error)."""

    column: str | None = None


class _ClampingLoader(Loader):
    """Loads ``infinity``/``-infinity`` as fixed values, anything else with the stock loader."""

    base: type[Loader]
    high: Any
    low: Any

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._load = self.base(oid, context).load

    def load(self, data: Any) -> Any:
        if data == b"infinity":
            return self.high
        if data == b"-infinity":
            return self.low
        return self._load(data)


@functools.cache
def _clamping(base: type[Loader], high: Any, low: Any) -> type[Loader]:
    return type(f"Clamping{base.__name__}", (_ClampingLoader,), {"base": base, "high": high, "low": low})


def clamp_infinity(connection: psycopg.Connection[Any]) -> None:
    """Read this connection's infinite dates and timestamps as the types' largest/smallest values."""
    adapters = connection.adapters
    for name, (high, low, _, _) in _CLAMPED.items():
        info = psycopg.postgres.types.get(name)
        assert info is not None
        base = adapters.get_loader(info.oid, pq.Format.TEXT)
        if base is not None and not issubclass(base, _ClampingLoader):
            adapters.register_loader(info.oid, _clamping(base, high, low))


def clamps_infinity(connection: psycopg.Connection[Any]) -> bool:
    """Whether :func:`clamp_infinity` set up this connection (the COPY path then does the same)."""
    info = psycopg.postgres.types.get("date")
    assert info is not None
    loader = connection.adapters.get_loader(info.oid, pq.Format.TEXT)
    return loader is not None and issubclass(loader, _ClampingLoader)


def clamp_text(text: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """A date or timestamp column read as text by the COPY: ``infinity`` clamped, then typed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_date(arrow_type):
        name = "date"
    else:
        name = "timestamptz" if getattr(arrow_type, "tz", None) else "timestamp"
    _, _, high, low = _CLAMPED[name]
    text = pc.if_else(pc.equal(text, "infinity"), high, text)
    text = pc.if_else(pc.equal(text, "-infinity"), low, text)
    return text.cast(arrow_type)


class NamesColumn:
    """A cursor mixin: a value the driver cannot convert raises :class:`ValueConversionError`
    naming its column."""

    def fetchone(self) -> Any:
        try:
            return super().fetchone()  # type: ignore[misc]
        except psycopg.DataError as exc:
            raise named(self, exc) from exc

    def fetchmany(self, size: int = 0) -> list[Any]:
        try:
            return super().fetchmany(size)  # type: ignore[misc,no-any-return]
        except psycopg.DataError as exc:
            raise named(self, exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()  # type: ignore[misc,no-any-return]
        except psycopg.DataError as exc:
            raise named(self, exc) from exc


class ClientCursor(NamesColumn, psycopg.Cursor[Any]):
    """The connection's plain cursor, naming the column of a value it cannot convert."""


def named(cursor: Any, exc: psycopg.DataError) -> psycopg.DataError:
    if exc.sqlstate is not None or isinstance(exc, ValueConversionError):
        return exc  # the server's error, or already named
    error = ValueConversionError(str(exc))
    error.column = _failing_column(cursor)
    return error


def _failing_column(cursor: Any) -> str | None:
    """The first column of the last fetched rows with a value its loader rejects (only on failure)."""
    result = cursor.pgresult
    description = cursor.description
    if result is None or not description:
        return None
    transformer = Transformer.from_context(cursor)
    for col in range(min(result.nfields, len(description))):
        loader = transformer.get_loader(result.ftype(col), pq.Format(result.fformat(col)))
        for row in range(result.ntuples):
            value = result.get_value(row, col)
            if value is None:
                continue
            try:
                loader.load(value)
            except psycopg.DataError:
                return str(description[col].name)
    return None


def classify_conversion(exc: Exception) -> tuple[type[ComputeError], str] | None:
    """A value the driver could not convert (a client-side ``DataError``): a ``QueryError`` naming the
    column, without the value; the connection is fine."""
    if not isinstance(exc, psycopg.DataError) or exc.sqlstate is not None:
        return None
    text = " ".join(str(exc).split())
    detail = _QUOTED_VALUE.sub("", text)
    column = getattr(exc, "column", None)
    if column is not None:
        detail = f"column {column!r}: the driver cannot convert a value: {detail}"
    if "infinity" in text:
        detail = f"{detail}; {INFINITY_HINT}"
    return QueryError, detail
