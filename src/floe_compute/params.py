"""What ``execute()`` accepts as parameters, checked before anything runs.

Parameters are a mapping of ``:name`` placeholders to values, on every engine. A driver's own
positional style (``?``, ``%s``, ``$1``) differs from engine to engine, so a list or tuple is not
bound; nor is a list of mappings (DBAPI ``executemany``: on several drivers a loop of one-row
statements, which one query id, deadline and engine cancel cannot stand for). The messages name
types and placeholder names, never a bound value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from floe_compute.errors import ConfigError
from floe_compute.sql import segments

__all__ = ["check_params"]

_EXAMPLE = 'execute("SELECT * FROM t WHERE id = :id", {"id": 1})'
_PYFORMAT = re.compile(r"%\((\w+)\)s")


def check_params(sql: object, params: object, dialect: str | None = None) -> None:
    """Raise :class:`ConfigError` unless ``params`` is None or a mapping with ``str`` keys that
    fits ``sql``'s placeholder style."""
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise ConfigError(_not_a_mapping(params))
    for key in params:
        if not isinstance(key, str):
            raise ConfigError(
                f"params: parameter names must be str (a mapping of :name placeholders to values); "
                f"got a key of type {type(key).__name__}"
            )
    if params and isinstance(sql, str):
        for seg in segments(sql, dialect):
            match = seg.kind == "code" and _PYFORMAT.search(sql, seg.start, seg.end)
            if match:
                raise ConfigError(
                    f"params: the statement has a {match.group(0)} placeholder; floe-compute binds "
                    f":name placeholders from a mapping on every engine: write :{match.group(1)}"
                )


def _not_a_mapping(params: object) -> str:
    accepted = f"params: expected a mapping of :name placeholders to values, as in {_EXAMPLE}"
    if isinstance(params, list | tuple) and params and all(isinstance(p, Mapping) for p in params):
        return (
            f"params: a {type(params).__name__} of mappings (executemany) is not supported: run "
            "execute() once per row, or insert the rows in one statement (INSERT ... VALUES, "
            "INSERT ... SELECT); " + accepted.removeprefix("params: ")
        )
    got = f"got {_article(type(params).__name__)}"
    if isinstance(params, list | tuple):
        got += " (positional placeholders such as ?, %s or $1 are not bound: write :name ones)"
    return f"{accepted}; {got}"


def _article(name: str) -> str:
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"
