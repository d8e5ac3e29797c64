"""The output formats of ``query``: rows written batch by batch as they arrive, never collected."""

from __future__ import annotations

from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = ["TABLE_MAX_WIDTH", "WRITERS", "unique_columns"]

TABLE_MAX_WIDTH = 60
"""A table column is at most this wide; longer values are printed in full and overflow it."""


class _Writer:
    """Writes rows to a text stream, one batch at a time."""

    def __init__(self, out: TextIO, columns: list[str]) -> None:
        self.out = out
        self.columns = columns

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def finish(self, total: int) -> None:
        """Called after the last batch of a complete result."""


class _CsvWriter(_Writer):
    def __init__(self, out: TextIO, columns: list[str]) -> None:
        super().__init__(out, columns)
        import csv

        self._csv = csv.writer(out, lineterminator="\n")
        if columns:
            self._csv.writerow(columns)

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._csv.writerows(rows)


class _JsonlWriter(_Writer):
    def __init__(self, out: TextIO, columns: list[str]) -> None:
        super().__init__(out, columns)
        import json

        self._dumps = json.dumps

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        columns = self.columns
        dumps = self._dumps
        self.out.write("".join(_json_line(dumps, dict(zip(columns, row, strict=False))) for row in rows))


def _json_line(dumps: Callable[..., str], record: dict[str, Any]) -> str:
    """One JSON object: strict JSON, so NaN and the infinities (which it cannot hold) become null."""
    try:
        return dumps(record, default=str, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:  # rare: only a row holding a non-finite float pays for the walk
        return dumps(_finite(record), default=str, ensure_ascii=False, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def unique_columns(names: Sequence[str]) -> list[str]:
    """Column names made unique as pandas does: the second ``a`` is ``a_1``, the third ``a_2``."""
    seen: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate, n = name, 0
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


class _TableWriter(_Writer):
    """A simple aligned table: column widths come from the header and the first batch.

    A later value wider than its column is printed in full (that line is then not aligned); a
    column is never wider than ``TABLE_MAX_WIDTH`` unless a value needs it. Numbers are
    right-aligned, NULL is shown as ``NULL``, and a ``(N rows)`` footer ends a complete result.
    """

    def __init__(self, out: TextIO, columns: list[str]) -> None:
        super().__init__(out, columns)
        self._widths: list[int] | None = None
        self._numeric: list[bool] = []

    @staticmethod
    def _cell(value: Any) -> str:
        if value is None:
            return "NULL"
        text = value if isinstance(value, str) else str(value)
        return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")

    def _line(self, cells: Sequence[str], right: Sequence[bool]) -> str:
        assert self._widths is not None
        parts = [
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(cells, self._widths, right, strict=False)
        ]
        return "  ".join(parts).rstrip() + "\n"

    def _start(self, rows: Sequence[Sequence[str]], raw: Sequence[tuple[Any, ...]]) -> None:
        from decimal import Decimal

        widths = [len(c) for c in self.columns]
        for cells in rows:
            for i, cell in enumerate(cells):
                if len(cell) > widths[i]:
                    widths[i] = len(cell)
        self._widths = [
            max(len(c), min(w, TABLE_MAX_WIDTH)) for c, w in zip(self.columns, widths, strict=True)
        ]
        numeric = []
        for i in range(len(self.columns)):
            values = [row[i] for row in raw if row[i] is not None]
            numeric.append(
                bool(values)
                and all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values)
            )
        self._numeric = numeric
        self.out.write(self._line(self.columns, [False] * len(self.columns)))
        self.out.write(self._line(["-" * w for w in self._widths], [False] * len(self.columns)))

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        cells = [[self._cell(v) for v in row] for row in rows]
        if self._widths is None:
            self._start(cells, rows)
        self.out.write("".join(self._line(c, self._numeric) for c in cells))

    def finish(self, total: int) -> None:
        if not self.columns:
            self.out.write("(statement executed, no result set)\n")
            return
        if self._widths is None:
            self._start([], [])
        self.out.write(f"({total:,} row{'' if total == 1 else 's'})\n")


WRITERS: dict[str, type[_Writer]] = {"table": _TableWriter, "csv": _CsvWriter, "jsonl": _JsonlWriter}
