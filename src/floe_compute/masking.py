"""Bound values out of the library's error messages.

A driver's message may quote what was bound (``Could not convert string 'x'``, ``Casting value
"4111.5"``), also an element of a list or a field of a struct, in the text form the engine prints.
:func:`bound_texts` lists the text forms of every value bound, however nested; :func:`mask_values`
replaces them in a message.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

__all__ = ["bound_texts", "mask_values"]

#: Shorter forms are masked only where the driver quotes them: a bare ``42`` or ``abc`` in a
#: message is more often part of the message than the value.
MIN_BARE = 4

_SCALAR_BYTES = (str, bytes, bytearray, memoryview)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_DEFAULT_REPR = re.compile(r"^<.* at 0x[0-9a-fA-F]+>$")


def bound_texts(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The text forms of every value in ``params`` (inside lists, tuples, sets and mappings too),
    longest first, so that a value is masked before a shorter one it contains."""
    texts: set[str] = set()
    pending: list[Any] = list(params.values())
    seen: set[int] = set()
    while pending:
        value = pending.pop()
        if isinstance(value, Mapping | Collection) and not isinstance(value, _SCALAR_BYTES):
            if id(value) not in seen:  # a list that holds itself ends here
                seen.add(id(value))
                pending += value.values() if isinstance(value, Mapping) else value
            continue
        texts.update(_forms(value))
    return tuple(sorted((t for t in texts if t), key=len, reverse=True))


def mask_values(message: str, values: Iterable[str]) -> str:
    """``message`` with every bound value in ``values`` masked (``***``)."""
    for value in values:
        if value not in message:
            continue
        for quote in ("'", '"'):
            message = message.replace(f"{quote}{value}{quote}", f"{quote}***{quote}")
        if len(value) >= MIN_BARE:
            message = message.replace(value, "***")
    return message


def _forms(value: Any) -> list[str]:
    """How drivers print one scalar: ``str()``, ISO forms, escaped and hexadecimal forms."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, enum.Enum):
        return _forms(value.value)
    if isinstance(value, str):
        return _text_forms(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return [*_text_forms(raw.decode(errors="replace")), raw.hex(), raw.hex().upper()]
    if isinstance(value, int):
        try:
            return [str(value)]
        except ValueError:  # more digits than Python converts: no driver prints it either
            return []
    if isinstance(value, float | decimal.Decimal):
        return _number_forms(value)
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        return _time_forms(value)
    if isinstance(value, uuid.UUID):
        return [str(value), str(value).upper(), value.hex, value.hex.upper()]
    shown = _str(value)
    return [] if _DEFAULT_REPR.match(shown) else _text_forms(shown)


def _text_forms(text: str) -> list[str]:
    """The text, as SQL, JSON and Python quote it, and its pieces between control characters
    (a C string stops at a NUL)."""
    forms = [text, text.replace("'", "''"), json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]]
    forms += [p for p in _CONTROL.split(text) if len(p) >= MIN_BARE and p != text]
    return forms


def _number_forms(value: float | decimal.Decimal) -> list[str]:
    """The number as Python writes it, written out, and rounded (``Failed to cast decimal value
    4112``: an engine's message may show the integer it rounded to)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return []
        return [str(value), f"{value:f}", str(int(value)), str(round(value))]
    if not value.is_finite():
        return []
    forms = [str(value)]
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and abs(exponent) <= 64 and value.adjusted() <= 64:  # bounded length
        # normalized, written out, and rounded to an integer as an engine casting it does
        normal = value.normalize(decimal.Context(prec=value.adjusted() + 80))
        forms += [str(normal), f"{value:f}", f"{normal:f}", str(int(value)), str(round(value))]
    return forms


def _time_forms(value: datetime.date | datetime.time | datetime.timedelta) -> list[str]:
    if isinstance(value, datetime.timedelta):
        return [str(value)]
    forms = [str(value), value.isoformat()]
    if isinstance(value, datetime.datetime):
        forms += [value.date().isoformat(), value.strftime("%H:%M:%S")]
    elif isinstance(value, datetime.time):
        forms.append(value.strftime("%H:%M:%S"))
    return forms


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ is not a reason to fail a query
        return ""
