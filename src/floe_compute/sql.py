"""What the library needs to know about a SQL string, without running it.

``summarize`` and ``operation_name`` give low-cardinality, literal-free descriptions for spans, logs
and error messages (the OpenTelemetry ``db.query.summary`` shape: the operation followed by the
collections it touches, ``SELECT orders customers``). ``returns_rows``, ``statement_count`` and
``split_statements`` classify and split; ``bind_names`` and ``bindable_text`` find the real ``:name``
placeholders, never a colon inside a string literal, a quoted identifier or a comment.

Classification parses with sqlglot in the engine's dialect. What sqlglot cannot parse (or a string
too large to parse cheaply) falls back to a small lexer that knows strings (``''`` and backslash
escapes, ``E'...'``, dollar quotes), quoted identifiers and nested comments, plus the first keyword.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING, Any, TypeVar

from floe_compute.sql_lexer import Segment, code_only, glot_dialect, segments

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlglot import exp

__all__ = [
    "MAX_SUMMARY",
    "Segment",
    "bind_names",
    "bindable_text",
    "declarable",
    "operation_name",
    "reads_only",
    "returns_rows",
    "segments",
    "split_statements",
    "statement_count",
    "summarize",
]

MAX_SUMMARY = 255
MAX_PARSED = 100_000
"""Longer strings (a bulk ``INSERT ... VALUES``) are classified by the lexer: parsing them would cost
more than running them."""

# -- placeholders -------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"(?<![:\w\\]):([A-Za-z_]\w*)(?=::|[^:\w]|$)")
_PLACEHOLDER_CAST = re.compile(r"(?<![:\w\\]):([A-Za-z_]\w*)::")
# what SQLAlchemy's text() takes for a bind parameter: every other colon it would see is escaped
_SQLALCHEMY_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


_F = TypeVar("_F", bound="Callable[..., Any]")
_CACHED_TEXT_MAX = 4096  # longer texts (a load's multi-row INSERT) are rarely asked twice


def _per_text(function: _F) -> _F:
    """Cache a pure function of a SQL text asked again for every query, for short texts only:
    a cache of 512 long statements would hold hundreds of MB."""
    cached = functools.lru_cache(maxsize=512)(function)

    @functools.wraps(function)
    def call(sql: str, *args: Any, **kwargs: Any) -> Any:
        if len(sql) <= _CACHED_TEXT_MAX:
            return cached(sql, *args, **kwargs)
        return function(sql, *args, **kwargs)

    return call  # type: ignore[return-value]


def bind_names(sql: str, dialect: str | None = None) -> list[str]:
    """The ``:name`` placeholders of ``sql`` in order of first use: outside literals, quoted
    identifiers and comments; not ``::`` casts (``:v::int`` is ``v``), not ``:1``, not ``a:b``."""
    names: list[str] = []
    for seg in segments(sql, dialect):
        if seg.kind == "code":
            for match in _PLACEHOLDER.finditer(sql, seg.start, seg.end):
                if match.group(1) not in names:
                    names.append(match.group(1))
    return names


def bindable_text(sql: str, dialect: str | None = None) -> str:
    """``sql`` for SQLAlchemy's ``text()``: every colon that text() would take for a parameter but
    that is not a real placeholder (``':x'`` in a literal, ``10 :30`` in a comment) is escaped."""
    out: list[str] = []
    for seg in segments(sql, dialect):
        chunk = sql[seg.start : seg.end]
        if seg.kind == "code":
            real = {m.start() for m in _PLACEHOLDER.finditer(chunk)}
            chunk = _SQLALCHEMY_BIND.sub(functools.partial(_escape_unless, real=real), chunk)
            # text() would not see v in :v::int; with the cast escaped it binds v and sends ::
            chunk = _PLACEHOLDER_CAST.sub(r":\1\\:\\:", chunk)
        else:
            chunk = _SQLALCHEMY_BIND.sub(lambda m: "\\" + m.group(0), chunk)
        out.append(chunk)
    return "".join(out)


def _escape_unless(match: re.Match[str], real: set[int]) -> str:
    return match.group(0) if match.start() in real else "\\" + match.group(0)


# -- parsing ------------------------------------------------------------------------------------


class _QuietSqlglot(logging.Filter):
    """sqlglot warns with the statement's text when it falls back to a generic command: that text
    may hold a secret (``CREATE SECRET``), and the fallback is expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported syntax" not in str(record.msg)


@functools.lru_cache(maxsize=1)
def _sqlglot() -> Any:
    import sqlglot

    logger = logging.getLogger("sqlglot")
    if not any(isinstance(f, _QuietSqlglot) for f in logger.filters):
        logger.addFilter(_QuietSqlglot())
    return sqlglot


_NEEDS_PARSER = re.compile(r"\b(?:WITH|RETURNING)\b|;\s*\S", re.IGNORECASE)


def _plain(sql: str, dialect: str | None) -> bool:
    """One statement without ``WITH``, ``RETURNING`` or ``SELECT ... INTO``: the lexer classifies it
    exactly, so sqlglot (a large import on a service's first query) is not needed."""
    code = code_only(sql, dialect)
    return not _NEEDS_PARSER.search(code) and not _INTO.search(code)


@functools.lru_cache(maxsize=512)
def _parse(sql: str, dialect: str | None) -> tuple[exp.Expression, ...] | None:
    """The statements of ``sql`` as sqlglot trees, or None when the lexer answers (a plain
    statement) or sqlglot cannot parse it."""
    if len(sql) > MAX_PARSED or not sql.strip() or _plain(sql, dialect):
        return None
    sqlglot = _sqlglot()
    try:
        parsed = sqlglot.parse(sql, read=glot_dialect(dialect))
    except (sqlglot.errors.SqlglotError, RecursionError, ValueError, TypeError, KeyError, IndexError):
        return None
    except Exception:  # a parser bug must never fail a query: the lexer answers instead
        return None
    return tuple(p for p in parsed if p is not None)


def _statement(sql: str, dialect: str | None) -> exp.Expression | None:
    parsed = _parse(sql, dialect)
    return parsed[0] if parsed and len(parsed) == 1 else None


# -- statements ---------------------------------------------------------------------------------


def split_statements(sql: str, dialect: str | None = None) -> list[str]:
    """The statements of a script, as written, without empty ones (only blanks or comments)."""
    pieces, start = [], 0
    bounds = _semicolons(sql, dialect)
    for end in [*bounds, len(sql)]:
        piece = sql[start:end].strip()
        if piece and code_only(piece, dialect).strip():
            pieces.append(piece)
        start = end + 1
    return pieces


@_per_text
def _semicolons(sql: str, dialect: str | None) -> list[int]:
    """Offsets of the semicolons that end statements: from sqlglot's tokenizer, else the lexer."""
    if len(sql) <= MAX_PARSED and not _plain(sql, dialect):
        sqlglot = _sqlglot()
        try:
            tokens = sqlglot.tokenize(sql, read=glot_dialect(dialect))
            semicolon = sqlglot.tokens.TokenType.SEMICOLON
            return [t.start for t in tokens if t.token_type == semicolon]
        except Exception:
            pass
    found = []
    for seg in segments(sql, dialect):
        if seg.kind == "code":
            found += [i for i in range(seg.start, seg.end) if sql[i] == ";"]
    return found


@_per_text
def statement_count(sql: str, dialect: str | None = None) -> int:
    """How many statements ``sql`` holds (``SELECT 1; SELECT 2`` is 2; a trailing ``;`` is not)."""
    return len(split_statements(sql, dialect))


@_per_text
def text_facts(sql: str, dialect: str | None = None) -> tuple[str, str, int]:
    """:func:`summarize`, :func:`operation_name` and :func:`statement_count` of one text: every
    query asks for all three, in one cached call."""
    return summarize(sql, dialect), operation_name(sql, dialect), statement_count(sql, dialect)


_CREATE_KINDS = re.compile(
    r"^\s*\(*\s*([A-Za-z]+)(?:\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?"
    r"(TABLE|VIEW|SCHEMA|INDEX|SECRET|MACRO|SEQUENCE|FUNCTION|TYPE|DATABASE))?",
    re.I,
)


@_per_text
def operation_name(sql: str, dialect: str | None = None) -> str:
    """The statement's operation, upper-cased: ``SELECT`` (also for ``WITH ... SELECT``),
    ``INSERT`` (also for ``WITH ... INSERT``), ``CREATE TABLE``, ``DROP VIEW``, ``UNKNOWN``."""
    tree = _statement(sql, dialect)
    name = _tree_operation(tree) if tree is not None else None
    return name or _lexed_operation(sql, dialect)


def _lexed_operation(sql: str, dialect: str | None) -> str:
    match = _CREATE_KINDS.match(code_only(sql, dialect))
    if not match:
        return "UNKNOWN"
    verb = match.group(1).upper()
    if verb == "WITH":
        return "SELECT"
    return f"{verb} {match.group(2).upper()}" if match.group(2) else verb


def _tree_operation(tree: exp.Expression) -> str | None:
    from sqlglot import exp

    if isinstance(tree, exp.Query | exp.Values):  # SELECT, UNION..., VALUES and TABLE
        return "SELECT"
    if isinstance(tree, exp.Create | exp.Drop):
        kind = tree.args.get("kind")
        verb = "CREATE" if isinstance(tree, exp.Create) else "DROP"
        return f"{verb} {str(kind).upper()}" if kind else verb
    if isinstance(tree, exp.Alter):
        kind = tree.args.get("kind")
        return f"ALTER {str(kind).upper()}" if kind else "ALTER"
    names: dict[type[exp.Expression], str] = {
        exp.Insert: "INSERT",
        exp.Update: "UPDATE",
        exp.Delete: "DELETE",
        exp.Merge: "MERGE",
        exp.Copy: "COPY",
        exp.Describe: "DESCRIBE",
        exp.Show: "SHOW",
        exp.Pragma: "PRAGMA",
        exp.Set: "SET",
        exp.Use: "USE",
        exp.Transaction: "BEGIN",
        exp.Commit: "COMMIT",
        exp.Rollback: "ROLLBACK",
    }
    for cls, name in names.items():
        if isinstance(tree, cls):
            return name
    return None  # a generic command (EXPLAIN, CALL, CREATE SECRET...): the first keyword says it


_TARGET = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|VIEW)\s+((?:\"[^\"]+\"|[A-Za-z_][\w$]*)"
    r"(?:\.(?:\"[^\"]+\"|[A-Za-z_][\w$]*))*)",
    re.IGNORECASE,
)
_KEYWORDS = frozenset({"select", "lateral", "unnest", "exists", "if", "not", "or", "replace"})


_READS = frozenset({"SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "VALUES", "FROM", "TABLE"})


def reads_only(operation: str) -> bool:
    """Whether an :func:`operation_name` is a read: its result is all it does."""
    return operation.split(" ", 1)[0] in _READS


@_per_text
def summarize(sql: str, dialect: str | None = None) -> str:
    """``operation target...`` without literals, at most 255 characters."""
    operation = operation_name(sql, dialect)
    if operation.endswith(" SECRET") or operation == "SET":
        return operation  # a secret's name or a setting's value is nobody's business
    tree = _statement(sql, dialect)
    if tree is None:
        targets = _lexed_targets(sql, dialect)
    else:
        targets = _tree_targets(tree, dialect)
        targets += [f for f in _table_functions(sql, dialect) if f not in targets]
    return " ".join([operation, *targets])[:MAX_SUMMARY]


def _tree_targets(tree: exp.Expression, dialect: str | None) -> list[str]:
    from sqlglot import exp

    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    targets: list[str] = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function: named below as written (sqlglot may rename it)
        else:
            parts = [
                p.sql(dialect=glot_dialect(dialect)) for p in table.parts if isinstance(p, exp.Identifier)
            ]
            name = ".".join(parts)
            if len(parts) == 1 and name.lower().strip('"') in ctes:
                continue
        if name and name not in targets:
            targets.append(name)
    return targets


_TABLE_FUNCTION = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)\s*\(", re.IGNORECASE)


def _table_functions(sql: str, dialect: str | None) -> list[str]:
    return [m.group(1) for m in _TABLE_FUNCTION.finditer(code_only(sql, dialect))]


def _lexed_targets(sql: str, dialect: str | None) -> list[str]:
    targets: list[str] = []
    for match in _TARGET.finditer(code_only(sql, dialect)):
        name = match.group(1)
        if name.lower() not in _KEYWORDS and name not in targets:
            targets.append(name)
    return targets


def returns_rows(sql: str, dialect: str | None = None) -> bool:
    """Whether the statement returns rows: a query, ``SHOW``, ``DESCRIBE``, ``EXPLAIN``, ``PRAGMA``,
    or a data change with ``RETURNING``. ``SELECT ... INTO new_table`` does not (it creates one)."""
    from sqlglot import exp

    tree = _statement(sql, dialect)
    if tree is None:
        return _lexed_operation(sql, dialect).split()[0] in _ROW_VERBS
    if isinstance(tree, exp.Values):
        return True
    if isinstance(tree, exp.Query):
        return tree.args.get("into") is None
    if isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge):
        return tree.args.get("returning") is not None
    if isinstance(tree, exp.Show | exp.Describe | exp.Pragma):
        return True
    if isinstance(tree, exp.Command):
        return str(tree.this).upper() in _ROW_VERBS
    return False


_ROW_VERBS = frozenset(
    {"SELECT", "VALUES", "TABLE", "WITH", "SHOW", "DESCRIBE", "EXPLAIN", "PRAGMA", "SUMMARIZE"}
)


@_per_text
def declarable(sql: str, dialect: str | None = "postgres") -> bool:
    """Whether ``DECLARE c CURSOR FOR <sql>`` is valid: one query (``SELECT``, ``VALUES``,
    ``TABLE``, set operations, ``WITH`` whose parts only read, ``FOR UPDATE`` allowed), not
    ``SELECT ... INTO``. The lexer's answer when sqlglot cannot parse: only a leading query keyword
    with no data-changing keyword in its code."""
    from sqlglot import exp

    tree = _statement(sql, dialect)
    if isinstance(tree, exp.Values):
        return True
    if tree is not None:
        if not isinstance(tree, exp.Query) or tree.args.get("into") is not None:
            return False
        return not any(
            isinstance(node, exp.Insert | exp.Update | exp.Delete | exp.Merge) for node in tree.walk()
        )
    if _parse(sql, dialect):  # parsed, but several statements
        return False
    code = code_only(sql, dialect)
    match = _QUERY_START.match(code)
    if match is None or _INTO.search(code):
        return False
    return match.group(1).upper() != "WITH" or not _DATA_MODIFYING.search(code)


_QUERY_START = re.compile(r"^[\s(]*(SELECT|VALUES|TABLE|WITH)\b", re.IGNORECASE)
_DATA_MODIFYING = re.compile(r"\(\s*(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)
_INTO = re.compile(r"^[\s(]*SELECT\b[^;]*?\bINTO\b", re.IGNORECASE)
