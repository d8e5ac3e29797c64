"""What the engines that speak HiveServer2 (Spark's Thrift server, Databricks) share, without a
driver import: each engine has its own driver."""

from __future__ import annotations

import re

_SQLSTATE_CLASSES = {  # SQL standard class names, so the message says what kind of error it is
    "22": "data exception",
    "23": "integrity constraint violation",
    "0A": "feature not supported",
    "42": "syntax error or access rule violation",
    "53": "insufficient resources",
    "54": "program limit exceeded",
}

# "org.apache.hive...HiveSQLException: Error running query: [CLASS] org.apache...AnalysisException: ..."
_WRAPPER = re.compile(
    r"^\s*(?:Error running query:|[\w$]+(?:\.[\w$]+)+(?:Exception|Error):"
    r"|\[[A-Z0-9_.]+\](?=\s+[\w$]+(?:\.[\w$]+)+(?:Exception|Error):))\s*"
)


def sqlstate_class(sqlstate: str | None) -> str | None:
    """The SQL standard's name for the class of ``sqlstate`` (its first two characters), for the
    classes a query's author can act on; None for others."""
    return _SQLSTATE_CLASSES.get(sqlstate[:2]) if sqlstate else None


def server_message(message: str) -> str:
    """The line of a server error that says what went wrong (``[ERROR_CLASS] message``), without
    the wrapper text and Java exception names a HiveServer2 endpoint puts in front of it, and
    without its JVM stack trace. Only the start is stripped: the rest may quote the user's SQL."""
    text = message.strip()
    while match := _WRAPPER.match(text):
        text = text[match.end() :]
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("at ", "== ")):
            return line.strip()
    return message.strip().splitlines()[0] if message.strip() else ""
