"""``DECLARE`` and the cursor's description in one round trip.

psycopg declares a server-side cursor (one round trip), then asks for its columns with a portal
``Describe`` (a second). A statement sent without parameters goes instead as one simple query,
``DECLARE ... ; FETCH FORWARD 0 FROM ...``: the empty ``FETCH`` carries the columns and runs
nothing (the cursor is still before its first row), so the first read can still choose a COPY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import errors, pq, sql
from psycopg.generators import execute

__all__ = ["declare_gen"]

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


def declare_gen(
    cursor: Any, psycopgs: Callable[..., Any], query: Any, params: Any, binary: bool | None
) -> Any:
    """psycopg's ``ServerCursor._declare_gen`` (with its describe), merged for a statement without
    parameters; anything else goes psycopg's own way (``psycopgs``)."""
    if params is not None or binary or cursor._described or not isinstance(query, str):
        return (yield from psycopgs(query, params, binary))
    declare = cursor._make_declare_statement(sql.SQL("")).as_string(cursor.connection)
    name = sql.Identifier(cursor._name).as_string(cursor.connection)
    # the newline ends a trailing -- comment of the statement before the FETCH
    command = f"{declare}{query}\n;FETCH FORWARD 0 FROM {name}"
    cursor._iter_rows = None
    yield from cursor._start_query(query)
    cursor._pgconn.send_query(command.encode(cursor._encoding))
    results = yield from execute(cursor._pgconn)
    for result in results:
        if result.status not in _OK:
            cursor._raise_for_result(result)
    if len(results) != 2 or results[-1].status != pq.ExecStatus.TUPLES_OK:
        raise errors.ProgrammingError("DECLARE CURSOR takes one query")
    cursor._format = cursor.format
    cursor._results = results[-1:]
    cursor._select_current_result(0, format=cursor._format)
    cursor._described = True
    return None
