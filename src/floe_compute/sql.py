"""Low-cardinality statement summaries, safe to put in spans, logs and error messages.

A summary follows the OpenTelemetry ``db.query.summary`` shape: the operation followed by the
collections it touches (``SELECT orders customers``). It never contains literals, so it cannot
leak a value that was spliced into the SQL text.
"""

from __future__ import annotations

import re

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^']|'')*'")
_OPERATION = re.compile(r"^\s*\(*\s*([A-Za-z]+)(?:\s+(TABLE|VIEW|SCHEMA|INDEX|SECRET|MACRO))?", re.I)
_TARGET = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|VIEW)\s+((?:\"[^\"]+\"|[A-Za-z_][\w$]*)"
    r"(?:\.(?:\"[^\"]+\"|[A-Za-z_][\w$]*))*)",
    re.IGNORECASE,
)
_KEYWORDS = frozenset({"select", "lateral", "unnest", "exists", "if", "not", "or", "replace"})
MAX_SUMMARY = 255


def operation_name(sql: str) -> str:
    """The statement's leading verb (``SELECT``, ``CREATE TABLE``), upper-cased."""
    match = _OPERATION.match(_COMMENTS.sub(" ", sql))
    if not match:
        return "UNKNOWN"
    verb = match.group(1).upper()
    if verb == "WITH":
        return "SELECT"
    return f"{verb} {match.group(2).upper()}" if match.group(2) else verb


def summarize(sql: str) -> str:
    """``operation target...`` without literals, at most 255 characters."""
    cleaned = _STRINGS.sub("''", _COMMENTS.sub(" ", sql))
    operation = operation_name(cleaned)
    if operation.split()[0] == "CREATE" and " SECRET" in operation:
        return operation
    targets: list[str] = []
    for match in _TARGET.finditer(cleaned):
        name = match.group(1)
        if name.lower() not in _KEYWORDS and name not in targets:
            targets.append(name)
    return " ".join([operation, *targets])[:MAX_SUMMARY]
