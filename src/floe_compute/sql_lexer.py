"""A small SQL lexer: code, string literals, quoted identifiers and comments, per dialect.

It knows strings (``''`` and backslash escapes, ``E'...'``, dollar quotes), quoted identifiers and
nested comments: enough to find placeholders and keywords outside literals without parsing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Segment", "code_only", "glot_dialect", "segments"]

_DIALECTS = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "duckdb": "duckdb",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
    "spark": "spark",
    "hive": "hive",
    "mysql": "mysql",
    "sqlite": "sqlite",
}
_BACKSLASH_ESCAPES = frozenset({"bigquery", "snowflake", "spark", "databricks", "hive", "mysql"})
_BACKTICKS = frozenset({"bigquery", "spark", "databricks", "hive", "mysql"})


def glot_dialect(name: str | None) -> str | None:
    """sqlglot's name for an engine (``postgresql+psycopg`` -> ``postgres``), None when unknown."""
    if not name:
        return None
    return _DIALECTS.get(name.split("+")[0].lower())


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of SQL text: ``code``, ``string``, ``identifier`` (quoted) or ``comment``."""

    kind: str
    start: int
    end: int


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def segments(sql: str, dialect: str | None = None) -> Iterator[Segment]:
    """Split ``sql`` into code, literals, quoted identifiers and comments (unterminated ones run to
    the end). Dollar quotes and nested ``/* */`` comments are PostgreSQL's and DuckDB's rules."""
    dialect = glot_dialect(dialect)
    backslash = dialect in _BACKSLASH_ESCAPES
    quotes = "'\"`" if dialect in _BACKTICKS else "'\""
    i, n, code = 0, len(sql), 0
    while i < n:
        c = sql[i]
        kind, end = "", i
        if c in quotes:
            escaped = backslash or (
                c == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _word(sql[i - 2]))
            )
            kind = "string" if c == "'" or (c == '"' and backslash) else "identifier"
            end = _quoted_end(sql, i, c, escaped)
        elif c == "-" and sql.startswith("--", i):
            newline = sql.find("\n", i)
            kind, end = "comment", n if newline < 0 else newline + 1
        elif c == "/" and sql.startswith("/*", i):
            kind, end = "comment", _comment_end(sql, i)
        elif c == "$" and (i == 0 or not _word(sql[i - 1])):
            match = _DOLLAR.match(sql, i)
            if match:
                close = sql.find(match.group(0), match.end())
                kind, end = "string", n if close < 0 else close + len(match.group(0))
        if not kind:
            i += 1
            continue
        if code < i:
            yield Segment("code", code, i)
        yield Segment(kind, i, end)
        i = code = end
    if code < n:
        yield Segment("code", code, n)


def _word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _quoted_end(sql: str, start: int, quote: str, backslash: bool) -> int:
    i, n = start + 1, len(sql)
    while i < n:
        c = sql[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and sql[i + 1] == quote:  # a doubled quote stands for itself
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _comment_end(sql: str, start: int) -> int:
    depth, i, n = 0, start, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def code_only(sql: str, dialect: str | None) -> str:
    """The statement with literals as ``''``, identifiers kept and comments as a space."""
    parts = []
    for seg in segments(sql, dialect):
        text = sql[seg.start : seg.end]
        parts.append({"code": text, "identifier": text, "string": "''"}.get(seg.kind, " "))
    return "".join(parts)
