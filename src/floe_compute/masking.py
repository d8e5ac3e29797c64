"""Bound values out of the library's messages: drivers quote them (``Could not convert string 'x'``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["bound_texts", "mask_values"]


def bound_texts(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The text forms of the bound values, longest first."""
    values = []
    for value in params.values():
        if isinstance(value, str | bytes | int | float) and not isinstance(value, bool):
            shown = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            if shown:
                values.append(shown)
    return tuple(sorted(set(values), key=len, reverse=True))


def mask_values(message: str, values: tuple[str, ...]) -> str:
    """Mask bound values that a driver's message quotes."""
    for value in values:
        for quote in ("'", '"'):
            message = message.replace(f"{quote}{value}{quote}", f"{quote}***{quote}")
        if len(value) >= 4:
            message = message.replace(value, "***")
    return message
