"""Sizes and durations as configs and arguments take them: ``2GB``, ``512MiB``, seconds.

The bottom of the config layer: the models (:mod:`floe_compute.config`) and the engines validate
their sizes and deadlines here, so that every field and argument refuses the same values alike.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ByteSize, TypeAdapter, ValidationError

from floe_compute.errors import ConfigError

__all__ = [
    "MAX_SECONDS",
    "MAX_SIZE",
    "Seconds",
    "check_seconds",
    "check_size",
    "check_timeout",
    "format_size",
    "parse_size",
    "shown_value",
]

MAX_SECONDS = 7 * 24 * 3600.0
"""The longest timeout, interval or recycle time accepted (7 days, as ``execute(timeout=)``): longer
is a mistake, and an infinite one would overflow the watchdog's and the monitor's waits."""
MAX_SIZE = 2**63 - 1
"""The largest size an engine setting can hold (a signed 64-bit byte count)."""

_SIZE_TEXT = re.compile(r"^\s*\d+(?:\.\d+)?\s*[A-Za-z]{0,3}\s*$")


@functools.cache
def _sizes() -> TypeAdapter[ByteSize]:
    return TypeAdapter(ByteSize)


def parse_size(value: str | int) -> int:
    """Bytes in a size such as ``2GB``, ``512MiB`` or ``1048576`` (``pydantic.ByteSize`` rules)."""
    return int(_sizes().validate_python(_size_input(value)))


_SIZE_UNITS = (
    ("TB", 1000**4),
    ("TiB", 1024**4),
    ("GB", 1000**3),
    ("GiB", 1024**3),
    ("MB", 1000**2),
    ("MiB", 1024**2),
    ("KB", 1000),
    ("KiB", 1024),
)


def format_size(size: int) -> str:
    """A byte count as people write it: ``64MB``, ``512MiB``, else plain bytes ``123B``."""
    for unit, factor in _SIZE_UNITS:
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def _size_input(value: Any) -> Any:
    """Refuse what ``ByteSize`` would take by accident (``True`` as 1 byte) or choke on."""
    expected = "expected a number with a unit such as 512MB or 2GB"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a {type(value).__name__} is not a size; {expected}")
    if isinstance(value, str) and (len(value) > 40 or not _SIZE_TEXT.match(value)):
        shown = repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"
        raise ValueError(f"{shown} is not a size; {expected}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a size; {expected}")
    return value


def check_size(value: Any) -> int | None:
    if value is None:
        return None
    try:
        size = parse_size(value)
    except ValidationError:
        raise ValueError(
            f"{value!r} is not a size; expected a number with a unit such as 512MB or 2GB"
        ) from None
    if size <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    if size > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than any engine accepts (at most {MAX_SIZE} bytes)")
    return size


def check_seconds(value: Any) -> Any:
    """Seconds: finite, positive, at most :data:`MAX_SECONDS`; a boolean is not a duration."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds, not a boolean")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("expected a number of seconds") from None
    if not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, not a {type(value).__name__}")
    if isinstance(value, int) and abs(value) > MAX_SECONDS:
        value = float(min(abs(value), 1e300)) * (1 if value > 0 else -1)
    if not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    if value <= 0:
        raise ValueError("must be greater than 0 seconds")
    if value > MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS:g} seconds (7 days)")
    return float(value)


Seconds = Annotated[float, BeforeValidator(check_seconds)]
"""A duration in seconds: finite, positive, at most 7 days."""


def check_timeout(value: object, field: str = "timeout") -> float | None:
    """A ``timeout=`` argument validated as config durations are, or a :class:`ConfigError`
    naming ``field``; ``None`` stays ``None`` (the config's default applies)."""
    try:
        checked: float | None = check_seconds(value)
    except ValueError as exc:
        shown = shown_value(value) if isinstance(value, int | float | str | bool) else type(value).__name__
        raise ConfigError(f"{field}: {exc} (got {shown})") from None
    return checked


def shown_value(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a huge int's repr would even raise)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {len(format(value, 'x'))} hex digits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
