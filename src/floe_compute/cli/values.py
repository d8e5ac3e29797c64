"""Values as the text formats write them: bytes as base64, timestamps and intervals in ISO 8601,
decimals exact, nested values as JSON.

For CSV and TSV this is decided once per Arrow column (never guessed per row), and columns
pyarrow's writer already writes well (numbers, decimals, strings, dates, booleans) pass through
untouched, so that CSV is written at pyarrow's speed. The table and JSON formats write the rows'
Python values (:func:`cell_text`, :func:`json_default`): they never import pyarrow (a fifth of a
short query's run).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["cell_text", "iso_duration", "json_default", "textual_batch"]


def iso_duration(months: int, days: int, nanoseconds: int) -> str:
    """``P1M2DT3.5S``: an interval in ISO 8601 (a negative part keeps its sign, as PostgreSQL's
    ``iso_8601`` style writes it)."""
    years, months = divmod(months, 12) if months >= 0 else (-((-months) // 12), -((-months) % 12))
    date = "".join(f"{n}{unit}" for n, unit in ((years, "Y"), (months, "M"), (days, "D")) if n)
    seconds = decimal.Decimal(nanoseconds) / 1_000_000_000
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    sign = "-" if seconds < 0 else ""
    time = "".join(
        f"{sign}{n.normalize():f}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n
    )
    if not date and not time:
        return "PT0S"
    return f"P{date}" + (f"T{time}" if time else "")


def _timedelta_iso(value: datetime.timedelta) -> str:
    return iso_duration(0, value.days, (value.seconds * 1_000_000 + value.microseconds) * 1000)


def json_default(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself: every value as exact text."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact, never through a float
    if isinstance(value, datetime.timedelta):
        return _timedelta_iso(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def cell_text(value: Any) -> str:
    """A value as the table shows it (not None: the table shows NULL itself)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=json_default, ensure_ascii=False)
    converted = json_default(value)
    return converted if isinstance(converted, str) else str(converted)


def _python_text(array: pa.Array, convert: Any) -> pa.Array:
    import pyarrow as pa

    return pa.array([None if v is None else convert(v) for v in array.to_pylist()], pa.string())


def _timestamps(array: pa.Array) -> pa.Array:
    """``2024-01-02T03:04:05.123000`` (``+00:00`` for a zone), from Arrow's own cast."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.replace_substring(pc.cast(array, pa.string()), pattern=" ", replacement="T", max_replacements=1)
    if array.type.tz is None:
        return text
    return pc.replace_substring_regex(text, pattern=r"([+-]\d\d)(\d\d)$", replacement=r"\1:\2")


def _column(array: pa.Array, nested_as_json: bool) -> pa.Array:
    import pyarrow as pa

    kind = array.type
    if pa.types.is_timestamp(kind):
        return _timestamps(array)
    if kind == pa.month_day_nano_interval():
        return _python_text(array, lambda v: iso_duration(v.months, v.days, v.nanoseconds))
    if pa.types.is_duration(kind):
        return _python_text(array, _timedelta_iso)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return _python_text(array, lambda v: base64.b64encode(v).decode("ascii"))
    if nested_as_json and pa.types.is_nested(kind):
        dumps = json.dumps
        return _python_text(array, lambda v: dumps(v, default=json_default, ensure_ascii=False))
    if pa.types.is_dictionary(kind):
        return _column(array.dictionary_decode(), nested_as_json)
    return array


def textual_batch(batch: pa.RecordBatch, names: list[str], *, nested_as_json: bool) -> pa.RecordBatch:
    """The batch with its columns renamed to ``names`` and made writable as text; columns that
    need no change are not copied."""
    import pyarrow as pa

    columns = [_column(column, nested_as_json) for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=names)
