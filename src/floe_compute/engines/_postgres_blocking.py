"""Waiting for PostgreSQL's answers inside libpq, on threads other than the main one.

psycopg waits for the server from Python: a round trip calls libpq's send, flush, read, "busy?" and
result functions one by one, and each call releases the GIL and takes it back (a uprobe on
``PyEval_SaveThread`` counted 34 releases in a short read, 27 in plain SQLAlchemy's). With many
threads, every release lets another thread in, and the query's thread then waits its turn to go on.
Waiting inside libpq instead (``PQexec``) releases the GIL once per round trip: 16 threads reading
``SELECT 1`` through a pool of 4 used 519 us of CPU per query instead of 702, with 8.5 voluntary
context switches per query instead of 20.3 (docs/benchmarks.md). A message of several statements
(the ``BEGIN; DECLARE ...; FETCH``) goes through ``PQexec`` too, which returns the last result, or
the first error, where the server stopped.

psycopg waits from Python for a reason that holds on the main thread only: a signal (Ctrl-C) is
handled there, between two waits, and psycopg then cancels the statement. Python runs signal
handlers on the main thread alone, so another thread loses nothing by waiting in libpq: a deadline
or ``cancel_query()`` stops its statement with a cancel request, which ends the wait. The main thread
is looked up again in a forked child, whose forking thread becomes its main thread, so the main
thread of a forked worker process keeps psycopg's waits too; so do green threads when gevent has
patched ``threading`` (psycopg makes the same check for its own waits), since a wait in libpq
would stop all of them.
"""

from __future__ import annotations

import os
import sys
import threading
from _thread import get_ident
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.abc import PQGen, QueryNoTemplate
from psycopg.sql import Composable

__all__ = ["Connection", "exec_command", "plain_waits", "waits_in_libpq"]

_ANSWERS = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
_IDLE = pq.TransactionStatus.IDLE
_main_ident = threading.main_thread().ident


def _forked() -> None:
    global _main_ident
    _main_ident = get_ident()  # Python makes the thread that forked the child's main thread


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forked)


def waits_in_libpq() -> bool:
    """Whether this thread may wait for the server inside libpq: any OS thread but the main one."""
    if get_ident() == _main_ident:
        return False
    return "gevent.monkey" not in sys.modules or not _green()


def _green() -> bool:
    """gevent has patched ``threading`` (its module is never imported here)."""
    return bool(sys.modules["gevent.monkey"].is_module_patched("threading"))


def plain_waits(connection: psycopg.Connection[Any]) -> bool:
    """Whether a command on this connection can go through :func:`exec_command` now."""
    return not connection._pipeline and waits_in_libpq()


def exec_command(connection: psycopg.Connection[Any], command: bytes) -> pq.abc.PGresult:
    """psycopg's ``_exec_command`` waiting inside libpq (one GIL release for the round trip),
    for a thread where :func:`waits_in_libpq` and a connection not in pipeline mode."""
    connection._check_connection_ok()
    result = connection.pgconn.exec_(command)
    if result.status not in _ANSWERS:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(result, encoding=connection.pgconn._encoding)
        raise errors.InterfaceError(
            f"unexpected result {pq.ExecStatus(result.status).name} from command {command.decode()!r}"
        )
    return result


class Connection(psycopg.Connection[Any]):
    """psycopg's connection, whose own commands (``BEGIN``, ``COMMIT``, ``ROLLBACK``, a server-side
    cursor's ``FETCH`` and ``CLOSE``) wait inside libpq off the main thread."""

    floe_begun = False
    """The open transaction is the pre-ping's ``BEGIN``, unused yet (``_postgres_ping``)."""
    floe_answered: float | None = None
    """``time.monotonic()`` when the last transaction ended, for the pre-ping."""
    floe_declared: Any = None
    """The server-side cursor its transaction declared last (``_postgres_copy``)."""
    floe_copy_stream: Any = None
    """Its unfinished ``COPY ... TO STDOUT`` (``_postgres_copy``)."""

    def _exec_command(
        self, command: QueryNoTemplate, result_format: pq.Format = pq.Format.TEXT
    ) -> PQGen[pq.abc.PGresult | None]:
        if self._pipeline or result_format != pq.Format.TEXT or not waits_in_libpq():
            return (yield from super()._exec_command(command, result_format))
        if isinstance(command, str):
            command = command.encode(self.pgconn._encoding)
        elif isinstance(command, Composable):
            command = command.as_bytes(self)
        return exec_command(self, command)

    def commit(self) -> None:
        """psycopg's, without its generators and its wait loop where the wait is in libpq."""
        if self._num_transactions or self._tpc or not plain_waits(self):
            super().commit()  # which also raises psycopg's errors for the last two
            return
        with self.lock:
            if self.pgconn.transaction_status != _IDLE:
                exec_command(self, b"COMMIT")
