"""What the Databricks connector sends again by itself, and which of its errors mean a statement
may run again.

The connector's retry policy (``databricks/sql/auth/retry.py``) sends an ``ExecuteStatement`` again
only for HTTP 429 and 503, the answers given before a statement starts. Its pause before that
re-send is at least ``_retry_delay_max`` (60 s), longer than the whole retry budget the engine
gives it (the connect timeout), so it gives up at once with ``MaxRetryDurationError``: for an
``ExecuteStatement`` that error means a 429/503 came back and nothing ran.

But urllib3 underneath also re-sends a POST whose answer was lost (a connection cut after the
request went out): an ``ExecuteStatement`` the warehouse already ran, so a write ran twice. Each
connection's policy is made to stop there instead; the statement fails with the connection lost,
and the core runs it again only if it only reads.
"""

from __future__ import annotations

from typing import Any

from databricks.sql import exc as db_exc
from databricks.sql.auth.retry import CommandType, DatabricksRetryPolicy
from urllib3.exceptions import MaxRetryError, ResponseError

__all__ = ["AnswerLost", "never_ran", "no_resend_after_a_lost_answer"]


class AnswerLost(db_exc.RequestError):
    """The connection broke after an ExecuteStatement went out: the statement may have run."""


class _NoResendAfterLostAnswer(DatabricksRetryPolicy):
    """The connector's policy, except that an ExecuteStatement whose answer was lost is not sent again."""

    def increment(self, method: Any = None, url: Any = None, *args: Any, **kwargs: Any) -> Any:
        error = kwargs.get("error", args[1] if len(args) > 1 else None)
        if (
            error is not None
            and self.command_type == CommandType.EXECUTE_STATEMENT
            and self._is_read_error(error)
        ):
            message = "the connection was lost before the statement's answer"
            context = {"method": CommandType.EXECUTE_STATEMENT.value}
            raise AnswerLost(message, context) from error  # type: ignore[no-untyped-call]
        return super().increment(method, url, *args, **kwargs)


def no_resend_after_a_lost_answer(dbapi_connection: Any) -> None:
    """Make a new connection's retry policy leave an ExecuteStatement with a lost answer alone."""
    backend = getattr(getattr(dbapi_connection, "session", None), "backend", None)
    policy = getattr(backend, "retry_policy", None)
    if type(policy) is DatabricksRetryPolicy:
        policy.__class__ = _NoResendAfterLostAnswer


def never_ran(exc: Exception) -> str | None:
    """Why ``exc``, the failure of an ExecuteStatement, lets a read run again, or None."""
    if (
        not isinstance(exc, db_exc.RequestError)
        or exc.context.get("method") != CommandType.EXECUTE_STATEMENT.value
    ):
        return None
    for cause in exc.args:
        if isinstance(cause, db_exc.MaxRetryDurationError) or (
            isinstance(cause, MaxRetryError) and isinstance(cause.reason, ResponseError)
        ):
            return "Databricks answered HTTP 429/503 to the statement before it started"
        if isinstance(cause, AnswerLost):
            return str(cause)  # for a read only: it may have run once already
    return None
