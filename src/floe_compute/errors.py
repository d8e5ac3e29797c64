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
    "RedactedDriverError",
    "ResourceLimitError",
    "driver_cause",
    "holds_secret",
    "is_secret_key",
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


class SessionError(ComputeError):
    """A session used in a way it cannot serve: by two threads at once, after it ended, or a
    transaction on an engine without them. Nothing was sent to the engine."""


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


SECRET_KEY = re.compile(
    r"pass(?:word|wd|phrase)|pwd|secret|token|credential|api_?key|private_key|session_key", re.IGNORECASE
)
"""A setting, URL query parameter or field whose name says it holds a secret (``password``,
``access_token``, ``private_key_passphrase``, ``credentials``, ``s3_secret_access_key``...)."""


def is_secret_key(name: object) -> bool:
    """Whether a parameter with this name holds a secret."""
    return isinstance(name, str) and SECRET_KEY.search(name) is not None


def holds_secret(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    """Whether the text of ``exc`` or of an exception chained to it contains a secret."""
    seen: set[int] = set()
    current: BaseException | None = exc
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        text = _text(current)
        if any(piece in text for secret in secrets for piece in _pieces(secret)):
            return True
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return False


def _text(exc: BaseException) -> str:
    try:
        return f"{exc} {exc.args!r}"
    except Exception:  # a broken __str__ is not a reason to fail while reporting an error
        return repr(type(exc))


def _pieces(secret: str) -> list[str]:
    """A secret, and its parts between control characters: a driver's C string stops at a NUL."""
    if not secret:
        return []
    parts = [p for p in _CONTROL.split(secret) if len(p) >= 4]
    return [secret, *parts]


class RedactedDriverError(Exception):
    """Stands in for a driver's exception whose text held a secret: its type and scrubbed message."""


def driver_cause(
    exc: BaseException | None, secrets: tuple[str, ...] = (), *, keep: bool = True
) -> BaseException | None:
    """What a library error may chain as ``__cause__``: the driver's exception, unless ``keep`` is
    off (``errors.keep_driver_cause``) or its text (or anything chained to it) holds a secret, in
    which case a scrubbed :class:`RedactedDriverError` takes its place.

    Raise the library error outside the ``except`` block that caught ``exc`` when ``exc`` may hold a
    secret: inside it, Python keeps ``exc`` as ``__context__`` whatever ``__cause__`` says.
    """
    if exc is None or not keep:
        return None
    if not holds_secret(exc, secrets):
        return exc
    return RedactedDriverError(f"{type(exc).__name__}: {redact(_text_only(exc), secrets)}")


def _text_only(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return ""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<creds>[^/@\s]*)@")
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>\b\w*(?:password|passwd|pwd|passphrase|secret|token|credentials?|api_?key|private_key)"
    r"\w*\s*[=:]\s*)"
    r"(?P<q>['\"]?)(?P<value>[^'\"\s,)&;]+)(?P=q)",
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
        for piece in _pieces(secret):
            text = text.replace(piece, "***")

    def _mask_url(m: re.Match[str]) -> str:
        user = m.group("creds").split(":", 1)[0]
        return f"{m.group('scheme')}{user}:***@" if ":" in m.group("creds") else m.group(0)

    text = _URL_CREDENTIALS.sub(_mask_url, text)

    def _mask(m: re.Match[str]) -> str:
        return f"{m.group('key')}{m.group('q')}***{m.group('q')}"

    return _SQL_SECRET.sub(_mask, _KEY_VALUE_SECRET.sub(_mask, text))


def driver_message(exc: BaseException) -> str:
    """The driver's message without the echo of the SQL text that some drivers append."""
    lines = []
    for line in str(exc).strip().splitlines():
        if line.startswith(("LINE ", "[SQL:", "[parameters:", "(Background on")):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines) or type(exc).__name__


def caused_by(error: ComputeError, cause: BaseException | None) -> ComputeError:
    """Chain the driver's exception as ``__cause__``, hiding SQLAlchemy's wrapper from the trace."""
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error
