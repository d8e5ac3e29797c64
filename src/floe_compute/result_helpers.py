"""What SQLAlchemy's ``Result`` and DuckDB users reach for: ``scalar()``, ``one()``,
``one_or_none()``, ``first()``, ``mappings()``, ``to_pandas()``, ``to_polars()``.

Each reads through the result's own ``fetchmany`` or Arrow path, so the query's deadline, a cancel
and ``limits.max_result_rows`` apply as to any fetch. The row helpers close the result (a write
commits, as ``close()`` does); one whose answer is an error (``one()`` on two rows) rolls back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from floe_compute.errors import QueryError

if TYPE_CHECKING:
    from _thread import RLock

    import pandas
    import polars

    from floe_compute.context import QueryContext
    from floe_compute.hooks import EngineHooks

__all__ = ["AsyncResultHelpers", "Mappings", "MultipleResultsFound", "NoResultFound", "ResultHelpers"]

Row = tuple[Any, ...]
T = TypeVar("T")


class NoResultFound(QueryError):
    """``one()`` found no row."""


class MultipleResultsFound(QueryError):
    """``one()`` or ``one_or_none()`` found more than one row."""


def _import(module: str) -> Any:
    """An optional library, or an ImportError that says which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is not installed: install floe-compute[{module}] (the extra that adds it) or {module}"
        ) from exc


def mapping_keys(columns: list[str]) -> list[str]:
    """Column names as dict keys: a repeated name gets a suffix (``a``, ``a_1``), as in pandas,
    so that no value is lost to a duplicate key."""
    seen: set[str] = set()
    keys = []
    for name in columns:
        key, n = name, 0
        while key in seen:
            n += 1
            key = f"{name}_{n}"
        seen.add(key)
        keys.append(key)
    return keys


class Mappings:
    """Rows as dicts (column name to value), read lazily from the result."""

    def __init__(self, rows: Iterator[Row], keys: list[str]) -> None:
        self._rows = rows
        self._keys = keys

    def __iter__(self) -> Iterator[dict[str, Any]]:
        keys = self._keys
        return (dict(zip(keys, row, strict=True)) for row in self._rows)

    def all(self) -> list[dict[str, Any]]:
        return list(self)


class ResultHelpers:
    """Mixed into :class:`~floe_compute.result.QueryResult`."""

    if TYPE_CHECKING:  # what QueryResult provides

        @property
        def columns(self) -> list[str]: ...

        _hooks: EngineHooks
        _context: QueryContext
        _lock: RLock

        def fetchmany(self, size: int | None = None) -> list[Row]: ...
        def close(self) -> None: ...
        def abandon(self) -> None: ...
        def __iter__(self) -> Iterator[Row]: ...
        def to_arrow(self) -> Any: ...

    def settle(self, *, rollback: bool) -> bool:
        """Close (or with ``rollback``, abandon) the result unless another thread is reading it
        now (then False): a session settles its previous statement this way before the next."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self.abandon() if rollback else self.close()
        finally:
            self._lock.release()
        return True

    def _first_rows(self, count: int) -> list[Row]:
        """Up to ``count`` rows, then the result closed (rolled back when reading failed)."""
        try:
            rows = self.fetchmany(count)
        except BaseException:
            self.abandon()
            raise
        self.close()
        return rows

    def _shape_error(self, cls: type[QueryError], what: str) -> QueryError:
        self.abandon()
        context = self._context
        return context.error(
            self._hooks.name,
            f"{self._hooks.name}: query {context.query_id} ({context.summary}): {what}",
            cls,
        )

    def first(self) -> Row | None:
        """The first row, or None when there is none; the rest is discarded and the result closed."""
        rows = self._first_rows(1)
        return rows[0] if rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None when there is no row; closes the result."""
        row = self.first()
        return row[0] if row else None

    def one_or_none(self) -> Row | None:
        """The only row, None when there is none, :class:`MultipleResultsFound` for more."""
        rows = self.fetchmany(2)
        if len(rows) > 1:
            raise self._shape_error(MultipleResultsFound, "expected at most one row, got more than one row")
        self.close()
        return rows[0] if rows else None

    def one(self) -> Row:
        """The only row: :class:`NoResultFound` for none, :class:`MultipleResultsFound` for more."""
        row = self.one_or_none()
        if row is None:
            raise self._shape_error(NoResultFound, "expected exactly one row, got no row")
        return row

    def mappings(self) -> Mappings:
        """The rest of the rows as dicts (``for m in result.mappings()``, or ``.all()``)."""
        return Mappings(iter(self), mapping_keys(self.columns))

    def to_pandas(self) -> pandas.DataFrame:
        """The rest of the result as a pandas DataFrame, converted from Arrow (needs pandas)."""
        _import("pandas")
        return self.to_arrow().to_pandas()

    def to_polars(self) -> polars.DataFrame:
        """The rest of the result as a polars DataFrame, converted from Arrow (needs polars)."""
        frame = _import("polars").from_arrow(self.to_arrow())
        return frame  # type: ignore[no-any-return]


class AsyncResultHelpers:
    """The asyncio twins, mixed into :class:`~floe_compute.aio.AsyncQueryResult`: each blocking
    helper runs on a worker thread, and a cancelled task cancels the query."""

    if TYPE_CHECKING:  # what AsyncQueryResult provides
        _result: ResultHelpers  # a QueryResult

        async def _run(self, call: Callable[..., T], *args: Any) -> T: ...
        async def fetchmany(self, size: int | None = None) -> list[Row]: ...

    async def first(self) -> Row | None:
        return await self._run(self._result.first)

    async def scalar(self) -> Any:
        return await self._run(self._result.scalar)

    async def one(self) -> Row:
        return await self._run(self._result.one)

    async def one_or_none(self) -> Row | None:
        return await self._run(self._result.one_or_none)

    async def mappings(self) -> AsyncIterator[dict[str, Any]]:
        """``async for m in result.mappings()``: the rest of the rows as dicts, a batch per fetch."""
        keys = mapping_keys(self._result.columns)
        while rows := await self.fetchmany():
            for row in rows:
                yield dict(zip(keys, row, strict=True))

    async def to_pandas(self) -> pandas.DataFrame:
        return await self._run(self._result.to_pandas)

    async def to_polars(self) -> polars.DataFrame:
        return await self._run(self._result.to_polars)
