"""The error hierarchy, and the translation of driver errors into it.

Every error a caller sees is a :class:`ComputeError`. The driver's own exception stays reachable as
``__cause__``; messages name the engine and, for query errors, the query id and a statement summary,
never parameter values or secrets.
"""

from __future__ import annotations

import re

__all__ = [
    "ComputeError",
    "ConfigError",
    "ConnectionFailedError",
    "PluginNotFoundError",
    "PoolExhaustedError",
    "QueryCancelledError",
    "QueryError",
    "QueryTimeoutError",
    "ResourceLimitError",
    "redact",
]


class ComputeError(Exception):
    """Base of every floe-compute error."""

    def __init__(self, message: str, *, engine: str | None = None) -> None:
        super().__init__(message)
        self.engine = engine


class ConfigError(ComputeError, ValueError):
    """A configuration, URL or manifest is invalid."""


class PluginNotFoundError(ConfigError, LookupError):
    """No installed plugin claims the URL scheme or name."""

    def __init__(self, message: str, *, available: list[str]) -> None:
        super().__init__(message)
        self.available = available


class ConnectionFailedError(ComputeError):
    """The engine could not be reached, or a connection was lost."""


class PoolExhaustedError(ConnectionFailedError):
    """No pooled connection became free within ``pool.timeout``."""


class QueryError(ComputeError):
    """A statement failed on the engine."""

    def __init__(
        self,
        message: str,
        *,
        engine: str | None = None,
        query_id: str | None = None,
        statement: str | None = None,
    ) -> None:
        super().__init__(message, engine=engine)
        self.query_id = query_id
        self.statement = statement
        self.tags: dict[str, str] = {}
        """The query's tags, as given to ``execute()``."""


class QueryTimeoutError(QueryError, TimeoutError):
    """A statement ran past its deadline and was cancelled on the engine."""

    timeout: float
    elapsed: float


class QueryCancelledError(QueryError):
    """A statement was cancelled: ``cancel_query()``, ``QueryResult.cancel()``, a cancelled
    asyncio task, ``disconnect()`` or Ctrl-C."""


class ResourceLimitError(QueryError):
    """A statement hit a configured resource limit."""

    limit: str | None = None


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<creds>[^/@\s]*)@")
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|client_secret|token|access_token|private_key)\s*[=:]\s*)"
    r"(?P<q>['\"]?)(?P<value>[^'\"\s,)]+)(?P=q)",
    re.IGNORECASE,
)
# SQL such as CREATE SECRET (TYPE iceberg, TOKEN 'abc'): only a quoted literal after the keyword
_SQL_SECRET = re.compile(
    r"(?P<key>\b(?:SECRET|TOKEN|PASSWORD|CLIENT_SECRET)\s+)(?P<q>')(?P<value>(?:[^']|'')*)'",
    re.IGNORECASE,
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove credentials from text that may reach a log line or an error message.

    Known secret values are replaced wherever they appear; user info in URLs and ``key=value`` pairs
    with a secret-looking key are masked even when the value is not known.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")

    def _mask_url(m: re.Match[str]) -> str:
        user = m.group("creds").split(":", 1)[0]
        return f"{m.group('scheme')}{user}:***@" if ":" in m.group("creds") else m.group(0)

    text = _URL_CREDENTIALS.sub(_mask_url, text)

    def _mask(m: re.Match[str]) -> str:
        return f"{m.group('key')}{m.group('q')}***{m.group('q')}"

    return _SQL_SECRET.sub(_mask, _KEY_VALUE_SECRET.sub(_mask, text))
