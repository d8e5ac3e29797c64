"""The output formats of ``query``: batches written as they arrive, never collected.

The export formats (CSV, TSV, Parquet) read the result as Arrow batches and write them with
pyarrow's CSV and Parquet writers, at the engine's speed. The table and JSON formats have no
pyarrow writer and write Python values: they read rows, so a short query never imports pyarrow.
How each value is written (bytes, timestamps, intervals) is in ``values.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO, TextIO

    import pyarrow as pa

__all__ = ["BINARY_FORMATS", "TABLE_MAX_WIDTH", "WRITERS", "unique_columns"]

TABLE_MAX_WIDTH = 60
"""A table column is at most this wide; longer values are printed in full and overflow it."""
ROW_GROUP_ROWS = 1_048_576
"""Rows per Parquet row group (pyarrow's own default for a whole table)."""
ROW_GROUP_BYTES = 64 * 1024 * 1024
"""The most Arrow memory gathered for one row group: wide rows make smaller groups."""


def binary_stream(out: TextIO) -> BinaryIO:
    """The bytes underneath a text stream (stdout, a file), after what was written as text."""
    out.flush()
    return out.buffer


class _Writer:
    """Writes batches to a stream, one at a time: Arrow record batches when ``arrow``, else rows."""

    arrow = True

    def __init__(self, out: TextIO, columns: list[str], page: int | None = None) -> None:
        self.out = out
        self.columns = columns
        self.page = page

    def batch(self, batch: Any) -> bool:
        """Write one batch; False when no more rows are wanted (a full page on a terminal)."""
        raise NotImplementedError

    def flush(self) -> None:
        self.out.flush()

    def finish(self, total: int) -> None:
        """Called after the last batch of a complete result (or of a full page)."""


class _CsvWriter(_Writer):
    """pyarrow's CSV writer: strings are always quoted, so NULL (nothing) differs from ``""``."""

    delimiter = ","

    def __init__(self, out: TextIO, columns: list[str], page: int | None = None) -> None:
        super().__init__(out, columns, page)
        self._binary = binary_stream(out)
        self._writer: Any = None
        self._header_written = False

    def _header(self) -> None:
        """The header as Python's csv module writes it (quoted only where needed), as before."""
        import csv
        import io

        text = io.StringIO()
        csv.writer(text, delimiter=self.delimiter, lineterminator="\n").writerow(self.columns)
        self._binary.write(text.getvalue().encode())
        self._header_written = True

    def batch(self, batch: pa.RecordBatch) -> bool:
        import pyarrow.csv as pcsv

        from floe_compute.cli.values import textual_batch

        if not self._header_written:
            self._header()
        ready = textual_batch(batch, self.columns, nested_as_json=True)
        if self._writer is None:
            options = pcsv.WriteOptions(include_header=False, delimiter=self.delimiter)
            self._writer = pcsv.CSVWriter(self._binary, ready.schema, write_options=options)
        self._writer.write_batch(ready)
        return True

    def flush(self) -> None:
        self._binary.flush()

    def finish(self, total: int) -> None:
        if self.columns and not self._header_written:
            self._header()
        self._binary.flush()


class _TsvWriter(_CsvWriter):
    delimiter = "\t"


class _ParquetWriter(_Writer):
    """pyarrow's Parquet writer, fed the engine's batches as they are (typed, never as text).

    Batches are gathered into row groups of :data:`ROW_GROUP_ROWS` rows (or
    :data:`ROW_GROUP_BYTES`, whichever comes first): each ``write_batch`` is a row group of its
    own, and one per engine batch made the file several times slower to write and to read.
    """

    def __init__(self, out: TextIO, columns: list[str], page: int | None = None) -> None:
        super().__init__(out, columns, page)
        self._binary = binary_stream(out)
        self._writer: Any = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0

    def batch(self, batch: pa.RecordBatch) -> bool:
        import pyarrow as pa

        self._pending.append(pa.RecordBatch.from_arrays(batch.columns, names=self.columns))
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        if self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
            self._write_row_group()
        return True

    def _write_row_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._binary, table.schema)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def flush(self) -> None:
        """Parquet is only readable once its footer is written: nothing to flush before."""

    def finish(self, total: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._write_row_group()
        if self._writer is None:  # no rows: still a valid file with the columns
            schema = pa.schema([(name, pa.null()) for name in self.columns])
            self._writer = pq.ParquetWriter(self._binary, schema)
        self._writer.close()
        self._binary.flush()


class _JsonlWriter(_Writer):
    """One JSON object per line; nested values stay JSON arrays and objects."""

    arrow = False

    def __init__(self, out: TextIO, columns: list[str], page: int | None = None) -> None:
        super().__init__(out, columns, page)
        import json

        from floe_compute.cli.values import json_default

        self._dumps = json.dumps
        self._default = json_default

    def lines(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        columns, dumps, default = self.columns, self._dumps, self._default
        return [_json_text(dumps, default, dict(zip(columns, row, strict=False))) for row in rows]

    def batch(self, batch: Sequence[tuple[Any, ...]]) -> bool:
        self.out.write("".join(line + "\n" for line in self.lines(batch)))
        return True


class _JsonWriter(_JsonlWriter):
    """One JSON array of objects, written as the batches arrive (an object per line)."""

    def __init__(self, out: TextIO, columns: list[str], page: int | None = None) -> None:
        super().__init__(out, columns, page)
        self._separator = "[\n"

    def batch(self, batch: Sequence[tuple[Any, ...]]) -> bool:
        lines = self.lines(batch)
        if lines:
            self.out.write(self._separator + ",\n".join(lines))
            self._separator = ",\n"
        return True

    def finish(self, total: int) -> None:
        self.out.write("[]\n" if self._separator == "[\n" else "\n]\n")


def _json_text(dumps: Callable[..., str], default: Callable[[Any], Any], record: dict[str, Any]) -> str:
    """One JSON object: strict JSON, so NaN and the infinities (which it cannot hold) become null."""
    try:
        return dumps(record, default=default, ensure_ascii=False, allow_nan=False)
    except ValueError:  # rare: only a row holding a non-finite float pays for the walk
        return dumps(_finite(record), default=default, ensure_ascii=False, allow_nan=False)


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


def _width(text: str) -> int:
    """Columns a text takes on a terminal: East Asian wide characters take two, combining none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


class _TableWriter(_Writer):
    """An aligned table: column widths come from the header and the first batch.

    A later value wider than its column is printed in full (that line is then not aligned); a
    column is never wider than ``TABLE_MAX_WIDTH`` unless a value needs it. Numbers are
    right-aligned, NULL is shown as ``NULL`` and the text 'NULL' as ``'NULL'``, and a ``(N rows)``
    footer ends a complete result. With ``page`` (a terminal), only that many rows are shown.
    """

    arrow = False

    def __init__(self, out: TextIO, columns: list[str], page: int | None = None) -> None:
        super().__init__(out, columns, page)
        from floe_compute.cli.values import cell_text

        self._text = cell_text
        self._widths: list[int] | None = None
        self._numeric: list[bool] = []
        self._shown = 0
        self._more = False

    def _cell(self, value: Any) -> str:
        if value is None:
            return "NULL"
        if value == "NULL":
            return "'NULL'"  # the text, told apart from a NULL
        text = self._text(value)
        return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")

    def _line(self, cells: Sequence[str], right: Sequence[bool]) -> str:
        assert self._widths is not None
        parts = []
        for cell, width, r in zip(cells, self._widths, right, strict=False):
            pad = " " * max(0, width - _width(cell))
            parts.append(pad + cell if r else cell + pad)
        return "  ".join(parts).rstrip() + "\n"

    def _start(self, rows: Sequence[Sequence[str]], numeric: list[bool]) -> None:
        widths = [_width(c) for c in self.columns]
        for cells in rows:
            for i, cell in enumerate(cells):
                widths[i] = max(widths[i], _width(cell))
        self._widths = [
            max(_width(c), min(w, TABLE_MAX_WIDTH)) for c, w in zip(self.columns, widths, strict=True)
        ]
        self._numeric = numeric
        self.out.write(self._line(self.columns, [False] * len(self.columns)))
        self.out.write(self._line(["-" * w for w in self._widths], [False] * len(self.columns)))

    def batch(self, batch: Sequence[tuple[Any, ...]]) -> bool:
        if self.page is not None and self._shown + len(batch) > self.page:
            self._more = True
            batch = batch[: self.page - self._shown]
        cells = [[self._cell(v) for v in row] for row in batch]
        if self._widths is None:
            self._start(cells, _numeric_columns(len(self.columns), batch))
        self.out.write("".join(self._line(c, self._numeric) for c in cells))
        self._shown += len(cells)
        return not self._more

    def finish(self, total: int) -> None:
        if not self.columns:
            self.out.write("(statement executed, no result set)\n")
            return
        if self._widths is None:
            self._start([], [False] * len(self.columns))
        if self._more:
            self.out.write(f"(first {self._shown:,} rows shown; --all shows every row)\n")
            return
        self.out.write(f"({total:,} row{'' if total == 1 else 's'})\n")


def _numeric_columns(count: int, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
    """Columns whose values (in the first batch) are all numbers: right-aligned."""
    from decimal import Decimal

    numeric = []
    for i in range(count):
        values = [row[i] for row in rows if row[i] is not None]
        numeric.append(
            bool(values)
            and all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values)
        )
    return numeric


WRITERS: dict[str, type[_Writer]] = {
    "table": _TableWriter,
    "csv": _CsvWriter,
    "tsv": _TsvWriter,
    "json": _JsonWriter,
    "jsonl": _JsonlWriter,
    "parquet": _ParquetWriter,
}

BINARY_FORMATS = frozenset({"parquet"})
"""Formats that are not text: not written to a terminal."""
