"""What the engines that speak HiveServer2 (Spark's Thrift server, Databricks) share, without a
driver import: each engine has its own driver."""

from __future__ import annotations

_SQLSTATE_CLASSES = {  # SQL standard class names, so the message says what kind of error it is
    "22": "data exception",
    "23": "integrity constraint violation",
    "0A": "feature not supported",
    "42": "syntax error or access rule violation",
    "53": "insufficient resources",
    "54": "program limit exceeded",
}


def sqlstate_class(sqlstate: str | None) -> str | None:
    """The SQL standard's name for the class of ``sqlstate`` (its first two characters), for the
    classes a query's author can act on; None for others."""
    return _SQLSTATE_CLASSES.get(sqlstate[:2]) if sqlstate else None
