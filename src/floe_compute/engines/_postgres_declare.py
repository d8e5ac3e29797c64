"""``DECLARE`` and the cursor's description in one round trip, with the transaction's ``BEGIN``.

psycopg begins the transaction (one round trip), declares a server-side cursor (a second), then asks
for its columns with a portal ``Describe`` (a third). A statement sent without parameters goes
instead as one simple query, ``BEGIN; DECLARE ... ; FETCH FORWARD 0 FROM ...``: the empty ``FETCH``
carries the columns and runs nothing (the cursor is still before its first row), so the first read
can still choose a COPY.
On a thread that waits inside libpq, the message goes through ``PQexec`` (one GIL release for the
round trip). The ``DECLARE`` and ``FETCH`` texts are formatted directly (psycopg composes them from
``sql`` objects, a few hundred Python calls per query); a cursor's ``FETCH`` ends in the same bytes
each time, made once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from psycopg import adapt, errors, pq, sql
from psycopg.generators import execute

from floe_compute.engines import _postgres_blocking

__all__ = ["FETCH_CHUNK_ROWS", "declare_gen", "fetch_gen", "fetch_now"]

FETCH_CHUNK_ROWS = 10_000
"""The most rows one ``FETCH`` asks for. Measured on psycopg 3 (three columns, 2 million rows):
``FETCH`` 10,000 at a time reads them in 1.08-1.18 s, 100,000 at a time in 1.42-1.65 s (a
larger result for libpq to grow and psycopg to load); a larger batch is several of these."""

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
_FETCH = b"FETCH FORWARD %d%s"


def declare_gen(
    cursor: Any, psycopgs: Callable[..., Any], query: Any, params: Any, binary: bool | None
) -> Any:
    """psycopg's ``ServerCursor._declare_gen`` (with its describe), merged for a statement without
    parameters; anything else goes psycopg's own way (``psycopgs``)."""
    if params is not None or binary or cursor._described or not isinstance(query, str):
        return (yield from psycopgs(query, params, binary))
    if cursor._scrollable is not None or cursor._withhold:
        return (yield from psycopgs(query, params, binary))
    name = _quoted(cursor)
    begin = _begin(cursor._conn)
    # the newline ends a trailing -- comment of the statement before the FETCH
    command = f"{begin}DECLARE {name} CURSOR FOR {query}\n;FETCH FORWARD 0 FROM {name}"
    cursor._iter_rows = None
    if begin:  # psycopg's _start_query, but for the BEGIN it would send on its own
        if cursor._closed:
            raise errors.InterfaceError("the cursor is closed")
        if cursor.pgresult is not None:  # a new cursor is reset already
            cursor._reset()
        cursor._last_query = None
        cursor._tx = adapt.Transformer(cursor)
    else:
        yield from cursor._start_query(query)
    encoded = command.encode(cursor._encoding)
    if _postgres_blocking.waits_in_libpq():
        # PQexec returns the last result; the server skips what follows an error, so an error
        # is the one returned
        described = _postgres_blocking.exec_command(cursor._conn, encoded)
    else:
        cursor._pgconn.send_query(encoded)
        results = yield from execute(cursor._pgconn)
        for result in results:
            if result.status not in _OK:
                cursor._raise_for_result(result)
        if len(results) != 2 + bool(begin):
            raise errors.ProgrammingError("DECLARE CURSOR takes one query")
        described = results[-1]
    if described.status != pq.ExecStatus.TUPLES_OK:
        raise errors.ProgrammingError("DECLARE CURSOR takes one query")
    cursor._format = cursor.format
    cursor._results = [described]
    cursor._select_current_result(0, format=cursor._format)
    cursor._described = True
    cursor.floe_fetch_from = _fetch_tail(cursor, name)
    return None


def _begin(connection: Any) -> str:
    """The ``BEGIN`` psycopg would send before the ``DECLARE`` (none when a transaction is open),
    to go in the same message."""
    if connection._autocommit or connection.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return ""
    return f"{connection._get_tx_start_command().decode()};"


def fetch_gen(cursor: Any, num: int | None) -> Any:
    """psycopg's ``ServerCursor._fetch_gen`` (3.2-3.3), with the cursor's comment, and ``num`` rows
    asked in ``FETCH`` of at most :data:`FETCH_CHUNK_ROWS` each."""
    if cursor.closed:
        raise errors.InterfaceError("the cursor is closed")
    if not cursor._described:
        yield from cursor._start_query()
        yield from cursor._describe_gen()
    if num is None:
        command = b"FETCH FORWARD ALL" + _fetch_from(cursor)
        res = yield from cursor._conn._exec_command(command, result_format=cursor._format)
        return _loaded(cursor, res)
    rows: list[Any] = []
    while len(rows) < num:
        asked = min(num - len(rows), FETCH_CHUNK_ROWS)
        command = _FETCH % (asked, _fetch_from(cursor))
        res = yield from cursor._conn._exec_command(command, result_format=cursor._format)
        chunk = _loaded(cursor, res)
        rows.extend(chunk)
        if len(chunk) < asked:  # the portal's end
            break
    return rows


def fetch_now(cursor: Any, num: int) -> list[Any]:
    """:func:`fetch_gen` of ``num`` rows from a described cursor, for a thread that waits inside
    libpq: plain calls instead of psycopg's generators and wait loop."""
    if cursor._closed:
        raise errors.InterfaceError("the cursor is closed")
    tail = cursor.floe_fetch_from or _fetch_from(cursor)
    if num <= FETCH_CHUNK_ROWS:  # one FETCH
        return _loaded(cursor, _postgres_blocking.exec_command(cursor._conn, _FETCH % (num, tail)))
    rows: list[Any] = []
    while len(rows) < num:
        asked = min(num - len(rows), FETCH_CHUNK_ROWS)
        command = _FETCH % (asked, tail)
        chunk = _loaded(cursor, _postgres_blocking.exec_command(cursor._conn, command))
        rows.extend(chunk)
        if len(chunk) < asked:  # the portal's end
            break
    return rows


def _fetch_from(cursor: Any) -> bytes:
    """`` FROM <name> <comment>``, the end of each ``FETCH``, made once per cursor."""
    tail: bytes = cursor.floe_fetch_from
    if not tail:
        tail = cursor.floe_fetch_from = _fetch_tail(cursor, _quoted(cursor))
    return tail


def _fetch_tail(cursor: Any, name: str) -> bytes:
    return f" FROM {name} {cursor.fetch_comment}".rstrip().encode(cursor._encoding)


def _loaded(cursor: Any, res: Any) -> list[Any]:
    """The rows of a ``FETCH``'s result, loaded as psycopg's own fetch does."""
    cursor.pgresult = res
    cursor._tx.set_pgresult(res, set_loaders=False)
    return cursor._tx.load_rows(0, res.ntuples, cursor._make_row)  # type: ignore[no-any-return]


def _quoted(cursor: Any) -> str:
    name: str = cursor._name
    if _PLAIN_NAME.match(name):
        return f'"{name}"'
    return sql.Identifier(name).as_string(cursor.connection)
