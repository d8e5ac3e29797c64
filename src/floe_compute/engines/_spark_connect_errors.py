"""The DB-API errors of the Spark Connect engine's driver module, chosen from what the server sent:
its SQLSTATE, error class and gRPC status, never its message's words.

Private to :mod:`floe_compute.engines.spark_connect`.
"""

from __future__ import annotations

import grpc
from pyspark.errors import PySparkException

_STACK = "\n\nJVM stacktrace:"


class Warning(Exception):  # the DB-API name
    pass


class Error(Exception):
    """A Spark Connect error: its error class and SQLSTATE as the server sent them."""

    def __init__(
        self,
        message: str,
        *,
        error_class: str | None = None,
        sqlstate: str | None = None,
        grpc_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.sqlstate = sqlstate
        self.grpc_code = grpc_code


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class DataError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


_BY_SQLSTATE_CLASS: dict[str, type[DatabaseError]] = {
    "08": OperationalError,  # connection exception
    "22": DataError,
    "23": IntegrityError,
    "42": ProgrammingError,
    "0A": NotSupportedError,
    "XX": InternalError,
}
_GONE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
SESSION_GONE = (
    "INVALID_HANDLE.SESSION_CHANGED",
    "INVALID_HANDLE.SESSION_NOT_FOUND",
    "INVALID_HANDLE.SESSION_CLOSED",
)
"""Error classes of a session the server no longer has (it restarted, or expired the session)."""


def to_dbapi_error(exc: BaseException) -> Error:
    """The DB-API error for a client exception, chosen by SQLSTATE, error class and gRPC status."""
    if isinstance(exc, Error):
        return exc
    code = getattr(exc, "_grpc_status_code", None)
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
    error_class = sqlstate = None
    if isinstance(exc, PySparkException):
        error_class, sqlstate = exc.getCondition(), exc.getSqlState()
    if isinstance(exc, PySparkException) and error_class:
        message = exc.getMessage()
    elif isinstance(code, grpc.StatusCode):
        # a transport error: pyspark's message is the repr of the gRPC call (it keeps the call
        # as __context__); its details say what happened
        rpc = exc if isinstance(exc, grpc.RpcError) else exc.__context__
        details = getattr(rpc, "details", None)
        found = details() if isinstance(rpc, grpc.RpcError) and callable(details) else None
        message = f"{found or 'no details'} (gRPC {code.name})"
    else:
        message = str(exc) or type(exc).__name__
    message = message.split(_STACK, 1)[0].strip()
    kind: type[Error] = DatabaseError
    if code in _GONE or (error_class or "").startswith("INVALID_HANDLE.SESSION"):
        kind = OperationalError
    elif sqlstate:
        kind = _BY_SQLSTATE_CLASS.get(sqlstate[:2], DatabaseError)
    elif not isinstance(exc, PySparkException | grpc.RpcError):
        kind = InterfaceError
    name = code.name if isinstance(code, grpc.StatusCode) else None
    error = kind(message, error_class=error_class, sqlstate=sqlstate, grpc_code=name)
    error.__cause__ = exc
    return error
