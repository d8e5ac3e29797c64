"""The pool's pre-ping on PostgreSQL: no round trip for a connection that just had one, and the
``BEGIN`` the query sends next for the others.

A connection whose last round trip ended less than :data:`PING_AFTER_IDLE_S` ago, and whose socket
holds nothing the server sent unasked, is handed out as it is: a server that ends a session (a
terminated backend, a shutdown, an idle timeout) sends its error and closes the socket, which makes
it readable at once. pgx's pool likewise pings only connections idle for more than a second. The
others are pinged with the transaction's own ``BEGIN`` (one round trip, where ``;`` and then the
``BEGIN`` would be two), which still finds a dead connection before a query uses it. The transaction
so opened is empty until the query's first statement: the few things that cannot run in one
(changing ``autocommit`` or the isolation level) roll it back first.

What it knows of each connection lives on the driver's connection object: ``floe_begun`` (the open
transaction is a ping's, unused yet) and ``floe_answered`` (``time.monotonic()`` when its last
transaction ended).
"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

__all__ = ["PING_AFTER_IDLE_S", "answered", "ending", "ping", "statement_sent", "unbegin"]

PING_AFTER_IDLE_S = 1.0
"""How long after its last round trip a connection is pinged before it is handed out again."""


def ping(dbapi_connection: Any) -> bool:
    """True when the connection is alive: answered lately and quiet, or it took a ``BEGIN`` (as
    psycopg would send it) when idle, ``;`` inside an empty transaction a previous ping began;
    False when it cannot take either (then the dialect pings the usual way)."""
    status = dbapi_connection.pgconn.transaction_status  # an int: info's enum costs a few calls
    if dbapi_connection._autocommit:  # the property's value, without its call
        return False
    if status == TransactionStatus.IDLE:
        ended = getattr(dbapi_connection, "floe_answered", None)
        recent = ended is not None and time.monotonic() - ended < PING_AFTER_IDLE_S
        if recent and _quiet(dbapi_connection):
            return True
        command = dbapi_connection._get_tx_start_command()
    elif status == TransactionStatus.INTRANS and getattr(dbapi_connection, "floe_begun", False):
        command = b";"
    else:
        return False
    with dbapi_connection.lock:
        dbapi_connection.wait(dbapi_connection._exec_command(command))
    dbapi_connection.floe_begun = True
    return True


def ending(dbapi_connection: Any) -> bool:
    """The transaction is about to end: whether one is open (its end is then a round trip)."""
    dbapi_connection.floe_begun = False
    return bool(dbapi_connection.pgconn.transaction_status != TransactionStatus.IDLE)


def answered(dbapi_connection: Any) -> None:
    """The transaction's end went through: the server answered just now."""
    dbapi_connection.floe_answered = time.monotonic()


def _quiet(dbapi_connection: Any) -> bool:
    """Nothing waits on the socket: an idle session hears from the server only when it ends (or
    for a notification, which a ping then reads)."""
    try:
        fd = dbapi_connection.pgconn.socket
    except psycopg.OperationalError:  # closed
        return False
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return not poller.poll(0)
    return not select.select([fd], [], [], 0)[0]


def statement_sent(dbapi_connection: Any) -> None:
    """A statement (or the transaction's end) used the transaction: it is the query's now."""
    dbapi_connection.floe_begun = False


def unbegin(dbapi_connection: Any) -> None:
    """Roll back the empty transaction a ping began (before a change that needs none open)."""
    if getattr(dbapi_connection, "floe_begun", False):
        dbapi_connection.floe_begun = False
        if dbapi_connection.info.transaction_status == TransactionStatus.INTRANS:
            dbapi_connection.rollback()
