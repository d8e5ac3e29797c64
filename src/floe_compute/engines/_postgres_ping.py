"""The pool's pre-ping on PostgreSQL, merged with the ``BEGIN`` the query sends next.

A checkout pinged with ``;`` and then opening its transaction costs two round trips; pinging with
the transaction's own ``BEGIN`` costs one, and still finds a dead connection before a query uses
it. The transaction so opened is empty until the query's first statement: the few things that
cannot run in one (changing ``autocommit`` or the isolation level) roll it back first.
"""

from __future__ import annotations

import weakref
from typing import Any

from psycopg.pq import TransactionStatus

__all__ = ["begun_by_ping", "ping", "statement_sent", "unbegin"]

_BEGUN: weakref.WeakSet[Any] = weakref.WeakSet()
"""Connections whose open transaction the ping began and no statement has used yet."""


def ping(dbapi_connection: Any) -> bool:
    """``BEGIN`` (as psycopg would send it) on an idle connection, ``;`` inside an empty
    transaction a previous ping began; False when the connection cannot take it (then the
    dialect pings the usual way)."""
    status = dbapi_connection.info.transaction_status
    if dbapi_connection.autocommit:
        return False
    if status == TransactionStatus.IDLE:
        command = dbapi_connection._get_tx_start_command()
    elif status == TransactionStatus.INTRANS and dbapi_connection in _BEGUN:
        command = b";"
    else:
        return False
    with dbapi_connection.lock:
        dbapi_connection.wait(dbapi_connection._exec_command(command))
    _BEGUN.add(dbapi_connection)
    return True


def begun_by_ping(dbapi_connection: Any) -> bool:
    return dbapi_connection in _BEGUN


def statement_sent(dbapi_connection: Any) -> None:
    """A statement (or the transaction's end) used the transaction: it is the query's now."""
    _BEGUN.discard(dbapi_connection)


def unbegin(dbapi_connection: Any) -> None:
    """Roll back the empty transaction a ping began (before a change that needs none open)."""
    if dbapi_connection in _BEGUN:
        _BEGUN.discard(dbapi_connection)
        if dbapi_connection.info.transaction_status == TransactionStatus.INTRANS:
            dbapi_connection.rollback()
